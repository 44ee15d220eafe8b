import os
import subprocess
import sys


def test_python_dash_m_prints_version():
    out = subprocess.run([sys.executable, "-m", "maskingnet", "version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("maskingnet ")


def test_help_lists_verbs():
    out = subprocess.run([sys.executable, "-m", "maskingnet", "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "version" in out.stdout


def test_help_keeps_bracketed_defaults_and_fits_80_columns():
    from typer.testing import CliRunner

    from maskingnet.cli import app

    for verb in ("train", "predict", "evaluate", "submit", "serve", "bench"):
        wide = {**os.environ, "COLUMNS": "200"}
        command = [sys.executable, "-m", "maskingnet", verb, "-h"]
        out = subprocess.run(command, capture_output=True, text=True, env=wide)
        assert out.returncode == 0, out.stderr
        assert max(len(line) for line in out.stdout.splitlines()) <= 80, verb
    train = " ".join(CliRunner().invoke(app, ["train", "--help"]).output.split())
    assert "ce or ce+dice. [default: ce]" in train and "[default: off]" in train
    assert "[default: auto]" in CliRunner().invoke(app, ["predict", "-h"]).output


def test_train_help_shows_the_defaults_of_train_config():
    from typer.testing import CliRunner

    from maskingnet.cli import app
    from maskingnet.train import TrainConfig

    defaults = TrainConfig()
    train = " ".join(CliRunner().invoke(app, ["train", "-h"]).output.split())
    expected = [
        f"Epochs. [default: {defaults.epochs}]",
        f"Adam learning rate. [default: {defaults.lr:g}]",
        f"[default: {defaults.size[0]}x{defaults.size[1]}]",
        f"One of 'maskingnet models'. [default: {defaults.model}]",
    ]
    assert [text for text in expected if text not in train] == []


def test_version_option():
    from typer.testing import CliRunner

    from maskingnet import __version__
    from maskingnet.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"maskingnet {__version__}"


def test_a_user_error_is_one_line_and_exit_1_a_usage_error_exit_2(tmp_path):
    from typer.testing import CliRunner

    from maskingnet.cli import app

    bad_value = CliRunner().invoke(app, ["models", "--size", "big"])
    assert bad_value.exit_code == 1 and bad_value.output.startswith("models: size 'big'")
    assert len(bad_value.output.strip().splitlines()) == 1
    missing = CliRunner().invoke(
        app, ["evaluate", "-m", str(tmp_path / "none.onnx"), "--data", str(tmp_path)]
    )
    assert missing.exit_code == 1 and f"evaluate: {tmp_path / 'none.onnx'}" in missing.output
    assert CliRunner().invoke(app, ["models", "--no-such-option"]).exit_code == 2

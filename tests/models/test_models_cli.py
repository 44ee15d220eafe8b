"""The ``maskingnet models`` verb."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from maskingnet.cli import app


def test_models_verb_prints_a_row_per_network():
    result = CliRunner().invoke(app, ["models", "--width", "0.125", "--size", "64"])
    assert result.exit_code == 0
    table = result.output.split("\n\n")[0]
    assert [line.split("|")[1].strip() for line in table.splitlines()[2:]] == [
        "`unet`",
        "`segnet`",
        "`arc1`",
        "`arc2`",
        "`arc3`",
        "`maskingnet`",
    ]


def test_models_verb_lists_the_bundled_models_one_line_each():
    from maskingnet.models import list_bundled

    result = CliRunner().invoke(app, ["models", "--width", "0.125", "--size", "64"])
    listed = result.output.split("Bundled models")[1].strip().splitlines()[1:]
    assert [line.split()[0] for line in listed] == [model.name for model in list_bundled()]


def test_models_verb_json_has_params_and_gflops():
    result = CliRunner().invoke(app, ["models", "--width", "0.125", "--size", "64x32", "--json"])
    rows = json.loads(result.output)
    assert rows[0]["size"] == [64, 32] and rows[0]["params"] > 0 and rows[0]["gflops"] > 0


def test_models_verb_rejects_a_bad_size():
    result = CliRunner().invoke(app, ["models", "--size", "big"])
    assert result.exit_code == 1


def test_the_stored_catalog_says_what_the_networks_and_bundled_models_say_now():
    from maskingnet.catalog import live_catalog, read_catalog

    assert read_catalog() == live_catalog(), "run: python -m maskingnet.catalog"


def test_models_at_the_default_size_answers_from_stored_numbers_without_torch():
    import subprocess
    import sys

    code = (
        "import sys; from maskingnet.cli import app\n"
        "try: app(['models'])\nexcept SystemExit: pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "| `maskingnet` |" in result.stdout and "maskingnet-carvana" in result.stdout

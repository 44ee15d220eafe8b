import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from helpers import make_half_car_checkpoint, png_claiming_size
from PIL import Image, features

from maskingnet.inference import ModelSettings
from maskingnet.predict import PredictConfig, Predictor, output_stems, predict_files

ALL_KINDS = ("mask", "cutout", "white", "overlay")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return make_half_car_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, width * height * 3).reshape(height, width, 3)
    return Image.fromarray((base * 0.7 + rng.integers(0, 70, base.shape)).astype(np.uint8))


def write_good_inputs(folder: Path) -> dict[str, tuple[int, int]]:
    """Every kind of decodable input; returns file name -> expected output size (W, H)."""
    folder.mkdir(parents=True, exist_ok=True)
    expected = {}
    photo(40, 30, 1).convert("L").save(folder / "grey.jpg")
    expected["grey.jpg"] = (40, 30)
    photo(40, 30, 2).convert("CMYK").save(folder / "cmyk.jpg")
    expected["cmyk.jpg"] = (40, 30)
    rgba = photo(41, 29, 3).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(folder / "rgba.png")
    expected["rgba.png"] = (41, 29)
    deep = (np.asarray(photo(33, 21, 4).convert("L"), np.uint16) * 257).astype(np.uint16)
    Image.fromarray(deep).save(folder / "deep16.png")
    expected["deep16.png"] = (33, 21)
    photo(35, 27, 5).convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.gif")
    expected["palette.gif"] = (35, 27)
    if features.check("webp"):
        photo(38, 26, 6).save(folder / "photo.webp")
        expected["photo.webp"] = (38, 26)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees: portrait
    photo(40, 30, 7).save(folder / "rotated.jpg", exif=exif)
    expected["rotated.jpg"] = (30, 40)
    photo(37, 23, 8).save(folder / "odd size.png")
    expected["odd size.png"] = (37, 23)
    photo(1, 1, 9).save(folder / "one pixel.png")
    expected["one pixel.png"] = (1, 1)
    photo(36, 24, 10).save(folder / "voiture_ünïcødé_車.jpg")
    expected["voiture_ünïcødé_車.jpg"] = (36, 24)
    photo(32, 20, 11).save(folder / "png_named.dat", format="PNG")
    expected["png_named.dat"] = (32, 20)
    return expected


def write_bad_inputs(folder: Path) -> list[str]:
    """Every kind of undecodable input; returns their file names."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "zero.jpg").write_bytes(b"")
    photo(64, 48, 12).save(folder / "cut.jpg")
    data = (folder / "cut.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) // 2])
    (folder / "notes.jpg").write_text("this is not an image\n")
    (folder / "bomb.png").write_bytes(png_claiming_size(30_000, 30_000))
    (folder / "noise.png").write_bytes(
        np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    )
    return ["zero.jpg", "cut.jpg", "notes.jpg", "bomb.png", "noise.png"]


def one_thread_env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1")


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "maskingnet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=one_thread_env(),
    )


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, checkpoint):
    """One CLI run over a folder holding every kind of good and bad input, then a second identical run."""
    root = tmp_path_factory.mktemp("mixed")
    expected = write_good_inputs(root / "in")
    bad = write_bad_inputs(root / "in" / "bad")
    out = root / "out"
    args = [
        "predict",
        "-m",
        str(checkpoint),
        str(root / "in"),
        "--out",
        str(out),
        "--save",
        ",".join(ALL_KINDS),
    ]
    first = run_cli(*args, "--workers", "1", "--no-progress", "--precision", "fp32")
    stats = {path.name: (path.stat().st_mtime_ns, path.stat().st_ino) for path in out.iterdir()}
    lines = []
    again = PredictConfig(
        ModelSettings(checkpoint, precision="fp32"),
        [root / "in"],
        out,
        save=ALL_KINDS,
        workers=0,
        progress=False,
    )
    second = predict_files(again, report=lines.append)
    return {
        "root": root,
        "out": out,
        "expected": expected,
        "bad": bad,
        "first": first,
        "second": second,
        "stats": stats,
    }


def test_every_decodable_input_gets_all_outputs_at_its_own_size(mixed_run):
    out = mixed_run["out"]
    sizes = {}
    for name in mixed_run["expected"]:
        stem = Path(name).stem
        for suffix in ("_mask.png", "_cutout.png", "_white.jpg", "_overlay.png"):
            with Image.open(out / f"{stem}{suffix}") as image:
                sizes[(name, suffix)] = image.size
    assert sizes == {key: mixed_run["expected"][key[0]] for key in sizes}


def test_each_bad_input_gets_exactly_one_line_naming_it(mixed_run):
    lines = mixed_run["first"].stderr.splitlines()
    counts = {name: sum(f"{name}:" in line for line in lines) for name in mixed_run["bad"]}
    assert counts == {name: 1 for name in mixed_run["bad"]}


def test_bad_inputs_make_the_run_exit_non_zero_with_the_counts(mixed_run):
    first = mixed_run["first"]
    done = len(mixed_run["expected"])
    assert first.returncode != 0 and f"{done} done, {len(mixed_run['bad'])} failed" in first.stderr


def test_outputs_are_complete_files_with_no_temp_files_left(mixed_run):
    names = sorted(path.name for path in mixed_run["out"].iterdir())
    assert [name for name in names if name.startswith(".") or ".tmp" in name] == []


def test_mask_output_is_zero_or_255(mixed_run):
    values = np.unique(np.asarray(Image.open(mixed_run["out"] / "odd size_mask.png")))
    assert set(values.tolist()) <= {0, 255}


def test_cutout_output_is_rgba(mixed_run):
    assert Image.open(mixed_run["out"] / "grey_cutout.png").mode == "RGBA"


def test_second_run_rewrites_nothing(mixed_run):
    after = {path.name: (path.stat().st_mtime_ns, path.stat().st_ino) for path in mixed_run["out"].iterdir()}
    second = mixed_run["second"]
    assert after == mixed_run["stats"] and (second.done, second.skipped) == (0, len(mixed_run["expected"]))


def test_overwrite_rewrites_the_outputs(tmp_path, checkpoint):
    photo(40, 30).save(tmp_path / "car.jpg")
    config = PredictConfig(
        ModelSettings(checkpoint, precision="fp32"),
        [tmp_path / "car.jpg"],
        tmp_path / "out",
        save=("mask",),
        workers=0,
        progress=False,
    )
    predict_files(config)
    before = (tmp_path / "out" / "car_mask.png").stat().st_ino
    config.overwrite = True
    summary = predict_files(config)
    assert summary.done == 1 and (tmp_path / "out" / "car_mask.png").stat().st_ino != before


def test_switching_to_the_guided_filter_redoes_the_outputs(tmp_path, checkpoint):
    photo(40, 30).save(tmp_path / "car.jpg")
    config = PredictConfig(
        checkpoint, [tmp_path / "car.jpg"], tmp_path / "out", save=("mask",), workers=0, progress=False
    )
    predict_files(config)
    config.model = config.model.replace(guided=True)
    assert predict_files(config).done == 1


def test_same_stem_in_two_folders_gets_the_input_tree(tmp_path, checkpoint):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        photo(40, 30).save(tmp_path / folder / "car.jpg")
    config = PredictConfig(
        ModelSettings(checkpoint, precision="fp32"),
        [tmp_path / "a", tmp_path / "b"],
        tmp_path / "out",
        save=("mask",),
        workers=0,
        progress=False,
    )
    summary = predict_files(config)
    out = tmp_path / "out"
    written = sorted(path.relative_to(out).as_posix() for path in out.rglob("*.png"))
    assert summary.done == 2 and written == ["a/car_mask.png", "b/car_mask.png"]


def test_outputs_inside_an_input_folder_are_not_taken_as_inputs(tmp_path, checkpoint):
    photo(40, 30).save(tmp_path / "car.jpg")
    config = PredictConfig(
        ModelSettings(checkpoint, precision="fp32"),
        [tmp_path],
        tmp_path / "out",
        save=("cutout",),
        workers=0,
        progress=False,
    )
    predict_files(config)
    config.overwrite = True
    assert predict_files(config).done == 1


def test_output_stems_are_unique_and_stable():
    files = [PurePosixPath(name) for name in ("x/car.jpg", "x/CAR.png", "y/car.jpg", "y/other.png")]
    stems = output_stems(files)
    assert len(set(stems.values())) == 4 and stems == output_stems(list(reversed(files)))
    assert stems[PurePosixPath("y/car.jpg")] == PurePosixPath("y/car")


def test_predictor_gives_the_same_masks_as_predict(tmp_path, checkpoint):
    expected = write_good_inputs(tmp_path / "in")
    config = PredictConfig(
        checkpoint,
        [tmp_path / "in"],
        tmp_path / "out",
        save=("mask",),
        batch_size=1,
        workers=0,
        progress=False,
    )
    predict_files(config)
    predictor = Predictor(checkpoint)
    for name in expected:
        saved = np.asarray(Image.open(tmp_path / "out" / f"{Path(name).stem}_mask.png")) > 0
        assert np.array_equal(predictor.mask(tmp_path / "in" / name), saved), name


def test_predictor_map_has_the_photo_size_and_is_a_probability(tmp_path, checkpoint):
    photo(50, 20).save(tmp_path / "car.png")
    probs = Predictor(checkpoint, precision="fp32").predict(tmp_path / "car.png")
    assert probs.shape == (20, 50) and probs.dtype == np.float32 and 0 <= probs.min() <= probs.max() <= 1


def test_predictor_takes_pil_images_and_arrays_like_files(tmp_path, checkpoint):
    image = photo(50, 20)
    image.save(tmp_path / "car.png")
    predictor = Predictor(checkpoint, precision="fp32")
    from_file = predictor.predict(tmp_path / "car.png")
    assert np.array_equal(predictor.predict(image), from_file)
    assert np.array_equal(predictor.predict(np.asarray(image)), from_file)


def test_predict_many_matches_one_at_a_time(tmp_path, checkpoint):
    images = [photo(40, 30, seed) for seed in range(3)]
    predictor = Predictor(checkpoint, precision="fp32", batch_size=1)
    batched = list(predictor.predict_many(images))
    assert all(
        np.array_equal(probs, predictor.predict(image)) for probs, image in zip(batched, images, strict=True)
    )


def test_predictor_takes_the_input_size_from_the_checkpoint(tmp_path):
    path = make_half_car_checkpoint(tmp_path / "wide.safetensors", input_size=(96, 64))
    assert Predictor(path).size == (96, 64)


def test_predictor_cutout_is_rgba_at_photo_size(tmp_path, checkpoint):
    cut = Predictor(checkpoint, precision="fp32").cutout(photo(44, 28), soft_edges=True)
    assert cut.mode == "RGBA" and cut.size == (44, 28)


def test_kill_9_leaves_no_partial_output_and_the_rerun_finishes(tmp_path, checkpoint):
    source = tmp_path / "in"
    source.mkdir()
    photo(160, 120).save(source / "car_000.jpg")
    for index in range(1, 40):
        shutil.copy(source / "car_000.jpg", source / f"car_{index:03d}.jpg")
    out = tmp_path / "out"
    args = [
        sys.executable,
        "-m",
        "maskingnet",
        "predict",
        "-m",
        str(checkpoint),
        str(source),
        "--out",
        str(out),
        "--save",
        "cutout,white",
        "--batch-size",
        "1",
        "--workers",
        "0",
        "--no-progress",
        "--precision",
        "fp32",
    ]
    process = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=one_thread_env()
    )
    try:
        while process.poll() is None and len(list(out.glob("*_white.jpg"))) < 3:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    finished_before_kill = len(list(out.glob("*_white.jpg")))
    for path in out.glob("car_*"):
        Image.open(path).load()  # a half-written file would fail to decode
    again = PredictConfig(
        ModelSettings(checkpoint, precision="fp32"),
        [source],
        out,
        save=("cutout", "white"),
        workers=0,
        progress=False,
    )
    rerun = predict_files(again)
    assert (
        finished_before_kill < 40 and rerun.done == 40 - rerun.skipped and len(list(out.glob("car_*"))) == 80
    )
    assert [path.name for path in out.iterdir() if path.name.startswith(".")] == []


def test_unreadable_checkpoint_is_one_line_and_exit_1(tmp_path):
    from typer.testing import CliRunner

    from maskingnet.cli import app

    photo(40, 30).save(tmp_path / "car.jpg")
    args = [
        "predict",
        "-m",
        str(tmp_path / "missing.safetensors"),
        str(tmp_path / "car.jpg"),
        "--out",
        str(tmp_path),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and "missing.safetensors: " in result.output


STARTUP_SCRIPT = """
import sys
from pathlib import Path
from maskingnet.predict import PredictConfig, predict_files
summary = predict_files(
    PredictConfig(model="maskingnet-carvana", inputs=[sys.argv[1]], out=Path(sys.argv[2]),
                  save=("mask", "cutout"), progress=False),
    lambda line: None,
)
heavy = sorted(name for name in ("sympy", "torch._dynamo", "torch._inductor") if name in sys.modules)
print(summary.done, *heavy)
"""


def test_predicting_with_the_bundled_model_does_not_load_torchs_compiler_stack(tmp_path):
    """sympy and torch._dynamo add seconds to every command's start; the path of a photo needs neither."""
    photo(240, 160).save(tmp_path / "car.jpg")
    result = subprocess.run(
        [sys.executable, "-c", STARTUP_SCRIPT, str(tmp_path / "car.jpg"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env=one_thread_env(),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"]

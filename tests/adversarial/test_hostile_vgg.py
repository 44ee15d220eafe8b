"""A ``--vgg-weights`` file that is a pickle carrying code: refused without running it, in our words (torch's
own message advised ``weights_only=False``, which would run it)."""

from __future__ import annotations

import os

import pytest
import torch

from maskingnet.models import CheckpointError
from maskingnet.models.vgg import read_vgg_state


class RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_calls_a_function_is_refused_naming_it(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    torch.save({"features.0.weight": RunsCode(str(marker))}, evil)
    with pytest.raises(CheckpointError) as caught:
        read_vgg_state(evil)
    message = str(caught.value)
    assert message.startswith(f"{evil}: holds pickled objects other than tensors")
    assert "posix.system" in message and "weights_only" not in message and "\n" not in message
    assert not marker.exists()


def test_a_file_that_is_no_pickle_at_all_is_one_line(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00not a torch file\n" * 10)
    with pytest.raises(CheckpointError) as caught:
        read_vgg_state(junk)
    assert "\n" not in str(caught.value) and "weights_only" not in str(caught.value)

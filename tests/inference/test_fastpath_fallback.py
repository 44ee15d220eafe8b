"""The CPU fast path without oneDNN's fused ops: it says so once, then runs plain convolutions."""

from __future__ import annotations

import warnings

import pytest
import torch

from maskingnet.inference import FusedConv2d, fastpath, prepare_model
from maskingnet.models import create_model


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="no oneDNN: no fast path to fall from")
def test_missing_fused_ops_warn_once_and_fall_back(monkeypatch):
    monkeypatch.setattr(fastpath, "onednn_fusion_available", lambda: False)
    fastpath._say_no_fusion.cache_clear()
    model = create_model("maskingnet", width=0.125).eval()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = prepare_model(model, torch.device("cpu"), "fp32")
        prepare_model(model, torch.device("cpu"), "fp32")
    said = [w for w in caught if "fused convolution" in str(w.message)]
    assert len(said) == 1
    assert not any(isinstance(module, FusedConv2d) for module in first.modules())

"""Small builders shared by several test modules (importable as ``helpers``: pytest's pythonpath)."""

from __future__ import annotations

from pathlib import Path


def make_half_car_checkpoint(path: Path, input_size=(64, 64)) -> Path:
    """A tiny random MaskingNet whose classifier bias is set so that about half of a photo is "car"."""
    import torch

    from maskingnet.models import create_model, save_model

    torch.manual_seed(0)
    model = create_model("maskingnet", width=0.125).eval()
    ramp = torch.linspace(-2, 2, 64 * 64 * 3).reshape(1, 3, 64, 64)
    with torch.no_grad():
        logits = model(ramp + 0.5 * torch.randn_like(ramp))
        model.classifier.bias[1] -= (logits[0, 1] - logits[0, 0]).median()
    save_model(model, path, meta={"input_size": list(input_size)})
    return path

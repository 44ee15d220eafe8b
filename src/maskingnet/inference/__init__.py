"""Running a trained network on photos: one pipeline for every verb.

- :mod:`.backends`: the Backend protocol, :class:`TorchBackend`, :class:`OnnxBackend`, :func:`load_backend`;
- :mod:`.fastpath`: the CPU fast path (BN folding, fused convs, fp32 first stage);
- :mod:`.preprocess`: path | bytes | PIL | array -> model input + coordinate maps (how a photo is decoded);
- :mod:`.settings`: :class:`ModelSettings`, the options for running a model, in one object;
- :mod:`.predictor`: :class:`Predictor` (TTA included);
- :mod:`.pipeline`: :func:`run` and :func:`full_resolution` (up-sampling and the edge stage hook);
- :mod:`.sinks`: files, RLE rows, Dice scores (how a mask is written).

Device and precision choice live in :mod:`maskingnet.runtime` and are re-exported here.
"""

from __future__ import annotations

from maskingnet.data.coords import whole_photo_coords
from maskingnet.runtime import (
    DTYPES,
    PRECISIONS,
    cpu_bf16_supported,
    cpu_flags,
    precision_support,
    resolve_device,
    resolve_precision,
)

from .backends import (
    BACKENDS,
    Backend,
    OnnxBackend,
    TorchBackend,
    load_backend,
    logits_to_probs,
    make_backend,
)
from .fastpath import (
    Fp32Stage,
    FusedConv2d,
    fold_batchnorm,
    fuse_conv_relu,
    input_dtype,
    onednn_fusion_available,
    prepare_model,
)
from .pipeline import Failed, PostProcess, Sink, full_resolution, upsample_probs
from .predictor import Predictor, predict_probs, rank_predictor
from .preprocess import Prepared, Source, iterate_prepared, prepare
from .runner import run
from .settings import ModelSettings
from .sinks import DiceSink, FileSink, RleSink, Scored

__all__ = [
    "ModelSettings",
    "BACKENDS",
    "DTYPES",
    "PRECISIONS",
    "Backend",
    "DiceSink",
    "Failed",
    "FileSink",
    "Fp32Stage",
    "FusedConv2d",
    "OnnxBackend",
    "PostProcess",
    "Predictor",
    "Prepared",
    "RleSink",
    "Scored",
    "Sink",
    "Source",
    "TorchBackend",
    "cpu_bf16_supported",
    "cpu_flags",
    "fold_batchnorm",
    "full_resolution",
    "fuse_conv_relu",
    "input_dtype",
    "iterate_prepared",
    "load_backend",
    "logits_to_probs",
    "make_backend",
    "onednn_fusion_available",
    "precision_support",
    "predict_probs",
    "prepare",
    "prepare_model",
    "rank_predictor",
    "resolve_device",
    "resolve_precision",
    "run",
    "upsample_probs",
    "whole_photo_coords",
]

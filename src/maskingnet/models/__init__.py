"""The six networks (U-Net, SegNet, Arc. #1-#3, MaskingNet) as one configurable encoder-decoder.

Public API: :func:`create_model`, :func:`list_models`, :func:`save_model`, :func:`load_model`,
:func:`load_vgg_weights`, :func:`model_report`, :class:`ModelConfig`.
"""

from __future__ import annotations

from .bundled import DEFAULT_MODEL, list_bundled, load_model, resolve_model
from .checkpoint import CheckpointError, load_spec, model_spec, read_config, save_model
from .encoder_decoder import EncoderDecoder, ModelConfig
from .registry import MODEL_CONFIGS, PAPER_PARAMS, build_model, create_model, list_models, model_config
from .report import count_params, model_report, models_table
from .vgg import load_vgg_weights

__all__ = [
    "MODEL_CONFIGS",
    "PAPER_PARAMS",
    "CheckpointError",
    "DEFAULT_MODEL",
    "list_bundled",
    "resolve_model",
    "EncoderDecoder",
    "ModelConfig",
    "build_model",
    "count_params",
    "create_model",
    "list_models",
    "load_model",
    "load_spec",
    "model_spec",
    "load_vgg_weights",
    "model_config",
    "model_report",
    "models_table",
    "read_config",
    "save_model",
]

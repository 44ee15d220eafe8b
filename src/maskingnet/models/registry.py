"""The six networks of the thesis as six rows of :class:`ModelConfig`, and the public constructor."""

from __future__ import annotations

import dataclasses
from typing import Any

from .encoder_decoder import SEGNET_DECODER, VGG16_ENCODER, EncoderDecoder, ModelConfig

ARC_DECODER = ((512, 512, 512), (512, 512, 256), (256, 256, 128), (128, 128, 64), (64, 64, 64))
UNET_ENCODER = ((64, 64), (128, 128), (256, 256), (512, 512), (1024, 1024))
UNET_DECODER = ((512, 512), (256, 256), (128, 128), (64, 64))
SKIP_LEVELS = (3, 2, 1, 0)
NO_DILATION = (1, 1, 1, 1, 1)
DILATED_MIDDLE = (1, 1, 1, 1, 2)

_ARC1 = ModelConfig(
    name="arc1", encoder=VGG16_ENCODER, decoder=ARC_DECODER, upsample="unpool", concat_levels=SKIP_LEVELS
)

MODEL_CONFIGS: dict[str, ModelConfig] = {
    "unet": ModelConfig(
        name="unet",
        encoder=UNET_ENCODER,
        decoder=UNET_DECODER,
        upsample="transposed",
        concat_levels=SKIP_LEVELS,
        classifier_kernel=1,
    ),
    "segnet": ModelConfig(name="segnet", encoder=VGG16_ENCODER, decoder=SEGNET_DECODER, upsample="unpool"),
    "arc1": _ARC1,
    "arc2": dataclasses.replace(_ARC1, name="arc2", coords="input"),
    "arc3": dataclasses.replace(_ARC1, name="arc3", coords="mid", coord_level=4),
    "maskingnet": dataclasses.replace(
        _ARC1, name="maskingnet", coords="mid", coord_level=4, dilation=DILATED_MIDDLE
    ),
}

PAPER_PARAMS = {
    "unet": 31_043_586,
    "segnet": 29_444_162,
    "arc1": 32_799_554,
    "arc2": 32_800_706,
    "arc3": 32_808_770,
    "maskingnet": 32_808_770,
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`, in the thesis's order."""
    return list(MODEL_CONFIGS)


def model_config(name: str, **overrides: Any) -> ModelConfig:
    """The registry row ``name`` with any :class:`ModelConfig` fields replaced by ``overrides``."""
    if name not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_CONFIGS)}")
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown model options: {', '.join(unknown)}; known: {', '.join(sorted(fields))}")
    return dataclasses.replace(MODEL_CONFIGS[name], **overrides)


def create_model(
    name: str,
    num_classes: int = 2,
    in_channels: int = 3,
    width: float | None = None,
    *,
    pretrained: bool = False,
    **overrides: Any,
) -> EncoderDecoder:
    """Build one of :func:`list_models`, randomly initialised at ``width`` (default 1.0); ``overrides``
    replace config fields, e.g. ``create_model("maskingnet", dilation=(1, 1, 1, 2, 4))``.

    ``pretrained=True`` returns the bundled trained model of that architecture instead (the package's
    ``maskingnet`` at width 0.25; see ``maskingnet models``)."""
    if pretrained:
        if overrides or num_classes != 2 or in_channels != 3:
            raise ValueError("pretrained=True takes the bundled model as it is: no other settings")
        from .bundled import pretrained_model

        return pretrained_model(name, width)
    width = 1.0 if width is None else width
    config = model_config(name, num_classes=num_classes, in_channels=in_channels, width=width, **overrides)
    return build_model(config)


def build_model(config: ModelConfig) -> EncoderDecoder:
    """Build the network a :class:`ModelConfig` describes."""
    return EncoderDecoder(config)

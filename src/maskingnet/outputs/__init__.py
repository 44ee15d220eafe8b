"""From a photo and its car probabilities to pictures and files: the only code that makes output images.

``pictures`` turns probabilities into pictures (mask, cut-out, on a colour, overlay; hard or soft edges),
``framing`` frames a cut-out for a product page, ``encode`` writes PNG, WebP or JPEG bytes with OpenCV,
``layout`` says where each photo's outputs go, ``review`` flags the photos a person should look at and
``manifest`` keeps one row per photo. Public names are imported on first use, so that importing
``maskingnet.outputs.layout`` does not load OpenCV.
"""

from __future__ import annotations

from maskingnet.utils import lazy_exports

_PICTURES = (
    "OUTPUT_KINDS",
    "EdgeConfig",
    "Matte",
    "alpha_from_probs",
    "background_image",
    "binary_mask",
    "check_threshold",
    "cutout_image",
    "make_matte",
    "mask_image",
    "overlay_image",
    "parse_color",
    "parse_kinds",
    "render",
    "render_all",
)
_EXPORTS = dict.fromkeys(_PICTURES, "maskingnet.outputs.pictures")
_EXPORTS["car_box"] = "maskingnet.outputs.framing"

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

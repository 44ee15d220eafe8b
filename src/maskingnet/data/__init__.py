"""Carvana data: exact Kaggle RLE, robust image I/O, the Carvana/plain layout reader with splits by car,
joint transforms that carry the coordinate maps, and the synthetic Carvana-format generator.

Names are imported lazily so that ``import maskingnet.data.rle`` does not pull in torch.
"""

from __future__ import annotations

from maskingnet.utils import lazy_exports

_EXPORTS = {
    "rle_encode": "maskingnet.data.rle",
    "rle_decode": "maskingnet.data.rle",
    "BadInputError": "maskingnet.data.io",
    "read_image": "maskingnet.data.io",
    "read_mask": "maskingnet.data.io",
    "list_images": "maskingnet.data.io",
    "image_size": "maskingnet.data.io",
    "IMAGENET_MEAN": "maskingnet.data.transforms",
    "IMAGENET_STD": "maskingnet.data.transforms",
    "coord_maps": "maskingnet.data.coords",
    "to_tensor": "maskingnet.data.transforms",
    "resized_coord_maps": "maskingnet.data.coords",
    "AugmentConfig": "maskingnet.data.transforms",
    "Record": "maskingnet.data.carvana",
    "ScanResult": "maskingnet.data.carvana",
    "scan": "maskingnet.data.carvana",
    "load_mask": "maskingnet.data.carvana",
    "parse_name": "maskingnet.data.carvana",
    "split_by_car": "maskingnet.data.carvana",
    "thesis_split": "maskingnet.data.carvana",
    "kfold_by_car": "maskingnet.data.carvana",
    "SegmentationDataset": "maskingnet.data.carvana",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

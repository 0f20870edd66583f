# Copyright (c) mmsmlp contributors. All rights reserved.
from .crop_batch import CropBatch, crop_collate
from .imagenet import CheckedImageNet
from .synthetic import SHAPE_CLASSES, make_imagenet
from .transforms import CheckedLoadImageFromFile

__all__ = [
    'SHAPE_CLASSES', 'make_imagenet', 'CheckedImageNet',
    'CheckedLoadImageFromFile', 'CropBatch', 'crop_collate'
]

try:  # mmdet is optional for classification
    from .coco import CheckedCocoDataset  # noqa: F401
    __all__.append('CheckedCocoDataset')
except ImportError:
    pass
try:  # mmseg is optional for classification
    from .transforms.seg_loading import CheckedLoadAnnotations  # noqa: F401
    __all__.append('CheckedLoadAnnotations')
except ImportError:
    pass

# Copyright (c) mmsmlp contributors. All rights reserved.
from .gpu_augment import RandAugmentParams, RandomErasingParams
from .jpeg_bytes import LoadJPEGBytes
from .loading import CheckedLoadImageFromFile

__all__ = [
    'CheckedLoadImageFromFile', 'LoadJPEGBytes', 'RandAugmentParams',
    'RandomErasingParams'
]

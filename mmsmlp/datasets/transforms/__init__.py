# Copyright (c) mmsmlp contributors. All rights reserved.
from .gpu_augment import RandAugmentParams, RandomErasingParams
from .loading import CheckedLoadImageFromFile

__all__ = [
    'CheckedLoadImageFromFile', 'RandAugmentParams', 'RandomErasingParams'
]

# Copyright (c) mmsmlp contributors. All rights reserved.
from .gpu_augment import (RandAugmentParams, RandomErasingParams,
                          RandomFlipParams, RandomResizedCropParams)
from .loading import CheckedLoadImageFromFile
from .lookup_ops import LUTAutoContrast, LUTEqualize

__all__ = [
    'CheckedLoadImageFromFile', 'LUTAutoContrast', 'LUTEqualize',
    'RandAugmentParams', 'RandomErasingParams', 'RandomFlipParams',
    'RandomResizedCropParams'
]

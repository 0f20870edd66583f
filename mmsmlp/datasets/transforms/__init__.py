# Copyright (c) mmsmlp contributors. All rights reserved.
from .gpu_augment import (CenterCropParams, RandAugmentParams,
                          RandomErasingParams, RandomFlipParams,
                          RandomResizedCropParams, ResizeEdgeParams)
from .loading import CheckedLoadImageFromFile
from .lookup_ops import LUTAutoContrast, LUTEqualize

__all__ = [
    'CheckedLoadImageFromFile', 'LUTAutoContrast', 'LUTEqualize',
    'RandAugmentParams', 'RandomErasingParams', 'RandomFlipParams',
    'RandomResizedCropParams', 'ResizeEdgeParams', 'CenterCropParams'
]

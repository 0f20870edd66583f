# Copyright (c) mmsmlp contributors. All rights reserved.
from .synthetic import SHAPE_CLASSES, make_imagenet
from .transforms import CheckedLoadImageFromFile

__all__ = ['SHAPE_CLASSES', 'make_imagenet', 'CheckedLoadImageFromFile']

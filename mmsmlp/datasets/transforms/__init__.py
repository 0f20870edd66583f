# Copyright (c) mmsmlp contributors. All rights reserved.
from .loading import CheckedLoadImageFromFile

__all__ = ['CheckedLoadImageFromFile']

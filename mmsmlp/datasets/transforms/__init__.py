# Copyright (c) mmsmlp contributors. All rights reserved.
from .jpeg_bytes import LoadJPEGBytes
from .loading import CheckedLoadImageFromFile

__all__ = ['CheckedLoadImageFromFile', 'LoadJPEGBytes']

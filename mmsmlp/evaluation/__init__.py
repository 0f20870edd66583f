# Copyright (c) mmsmlp contributors. All rights reserved.
from .accuracy import BatchedAccuracy

__all__ = ['BatchedAccuracy']

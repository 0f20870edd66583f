# Copyright (c) mmsmlp contributors. All rights reserved.
from .hooks import CheckpointHook, EpochSeedHook, FiniteLossHook
from .optimizers import SkipNonFiniteOptimWrapper

__all__ = [
    'CheckpointHook', 'EpochSeedHook', 'FiniteLossHook',
    'SkipNonFiniteOptimWrapper'
]

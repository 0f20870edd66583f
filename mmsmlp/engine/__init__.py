# Copyright (c) mmsmlp contributors. All rights reserved.
from .ema import ForeachEMA
from .hooks import CheckpointHook, EpochSeedHook, FiniteLossHook
from .optimizers import (GroupedOptimWrapperConstructor,
                         SkipNonFiniteOptimWrapper)

__all__ = [
    'CheckpointHook', 'EpochSeedHook', 'FiniteLossHook', 'ForeachEMA',
    'GroupedOptimWrapperConstructor', 'SkipNonFiniteOptimWrapper'
]

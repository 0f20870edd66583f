# Copyright (c) mmsmlp contributors. All rights reserved.
from .ema import ForeachEMA
from .hooks import (CompileForwardHook, EpochSeedHook, FiniteLossHook,
                    SafeCheckpointHook)
from .optimizers import (GroupedOptimWrapperConstructor,
                         SkipNonFiniteOptimWrapper)

__all__ = [
    'CompileForwardHook', 'EpochSeedHook', 'FiniteLossHook', 'ForeachEMA',
    'GroupedOptimWrapperConstructor', 'SafeCheckpointHook',
    'SkipNonFiniteOptimWrapper'
]

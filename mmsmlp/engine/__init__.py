# Copyright (c) mmsmlp contributors. All rights reserved.
from .ema import ForeachEMA
from .hooks import (CompileForwardHook, CUDAGraphHook, EpochSeedHook,
                    FiniteLossHook, RawAndEMAHook, SafeCheckpointHook)
from .optimizers import (GroupedOptimWrapperConstructor,
                         MixedPrecisionOptimWrapper, SkipNonFiniteOptimWrapper)
from .schedulers import TimmCosineLR

__all__ = [
    'CompileForwardHook', 'CUDAGraphHook', 'EpochSeedHook', 'FiniteLossHook',
    'ForeachEMA', 'GroupedOptimWrapperConstructor',
    'MixedPrecisionOptimWrapper', 'RawAndEMAHook', 'SafeCheckpointHook',
    'SkipNonFiniteOptimWrapper', 'TimmCosineLR'
]

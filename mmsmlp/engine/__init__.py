# Copyright (c) mmsmlp contributors. All rights reserved.
from .ema import ForeachEMA
from .hooks import (CompileForwardHook, CUDAGraphHook,
                    DeferredRuntimeInfoHook, EpochSeedHook, FiniteLossHook,
                    RawAndEMAHook, SafeCheckpointHook)
from .optimizers import (GroupedOptimWrapperConstructor,
                         MixedPrecisionOptimWrapper, SkipNonFiniteOptimWrapper)
from .schedulers import TimmCosineLR

__all__ = [
    'CompileForwardHook', 'CUDAGraphHook', 'DeferredRuntimeInfoHook',
    'EpochSeedHook', 'FiniteLossHook',
    'ForeachEMA', 'GroupedOptimWrapperConstructor',
    'MixedPrecisionOptimWrapper', 'RawAndEMAHook', 'SafeCheckpointHook',
    'SkipNonFiniteOptimWrapper', 'TimmCosineLR'
]

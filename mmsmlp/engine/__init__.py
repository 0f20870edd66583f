# Copyright (c) mmsmlp contributors. All rights reserved.
from .ema import ForeachEMA
from .hooks import (ChannelsLastHook, CompileForwardHook, CUDAGraphHook,
                    DeferredRuntimeInfoHook, EpochSeedHook, FiniteLossHook,
                    LoaderSharingHook, RawAndEMAHook, SafeCheckpointHook)
from .optimizers import (GroupedOptimWrapperConstructor,
                         MixedPrecisionOptimWrapper, SkipNonFiniteOptimWrapper)
from .schedulers import TimmCosineLR

__all__ = [
    'ChannelsLastHook', 'CompileForwardHook', 'CUDAGraphHook',
    'DeferredRuntimeInfoHook', 'EpochSeedHook', 'FiniteLossHook',
    'ForeachEMA', 'GroupedOptimWrapperConstructor', 'LoaderSharingHook',
    'MixedPrecisionOptimWrapper', 'RawAndEMAHook', 'SafeCheckpointHook',
    'SkipNonFiniteOptimWrapper', 'TimmCosineLR'
]

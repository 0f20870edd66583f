# Copyright (c) mmsmlp contributors. All rights reserved.
from .ema import ForeachEMA
from .hooks import (ChannelsLastHook, CompileForwardHook, CUDAGraphHook,
                    DeferredRuntimeInfoHook, EpochSeedHook, FiniteLossHook,
                    LoaderSharingHook, RawAndEMAHook, SafeCheckpointHook)
from .model_wrappers import FlatReduceDDP
from .optimizers import (GroupedOptimWrapperConstructor,
                         MixedPrecisionOptimWrapper, SkipNonFiniteOptimWrapper)
from .schedulers import TimmCosineLR

__all__ = [
    'ChannelsLastHook', 'CompileForwardHook', 'CUDAGraphHook',
    'DeferredRuntimeInfoHook', 'EpochSeedHook', 'FiniteLossHook',
    'FlatReduceDDP', 'ForeachEMA', 'GroupedOptimWrapperConstructor',
    'LoaderSharingHook',
    'MixedPrecisionOptimWrapper', 'RawAndEMAHook', 'SafeCheckpointHook',
    'SkipNonFiniteOptimWrapper', 'TimmCosineLR'
]

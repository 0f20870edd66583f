# Copyright (c) mmsmlp contributors. All rights reserved.
from .hooks import (AtomicCheckpointHook, CompileForwardHook, EpochSeedHook,
                    FiniteLossHook)
from .optimizers import SkipNonFiniteOptimWrapper

__all__ = [
    'AtomicCheckpointHook', 'CompileForwardHook', 'EpochSeedHook',
    'FiniteLossHook',
    'SkipNonFiniteOptimWrapper'
]

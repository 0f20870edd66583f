# Copyright (c) mmsmlp contributors. All rights reserved.
from .hooks import (SafeCheckpointHook, CompileForwardHook, EpochSeedHook,
                    FiniteLossHook)
from .optimizers import SkipNonFiniteOptimWrapper

__all__ = [
    'SafeCheckpointHook', 'CompileForwardHook', 'EpochSeedHook',
    'FiniteLossHook',
    'SkipNonFiniteOptimWrapper'
]

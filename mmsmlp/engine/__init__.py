# Copyright (c) mmsmlp contributors. All rights reserved.
from .hooks import CheckpointHook, EpochSeedHook, FiniteLossHook, RawAndEMAHook
from .optimizers import MixedPrecisionOptimWrapper, SkipNonFiniteOptimWrapper
from .schedulers import TimmCosineLR

__all__ = [
    'CheckpointHook', 'EpochSeedHook', 'FiniteLossHook', 'RawAndEMAHook',
    'MixedPrecisionOptimWrapper', 'SkipNonFiniteOptimWrapper', 'TimmCosineLR'
]

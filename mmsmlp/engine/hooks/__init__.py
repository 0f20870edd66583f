# Copyright (c) mmsmlp contributors. All rights reserved.
from .safe_checkpoint_hook import SafeCheckpointHook
from .compile_forward_hook import CompileForwardHook
from .epoch_seed_hook import EpochSeedHook
from .finite_loss_hook import FiniteLossHook

__all__ = [
    'SafeCheckpointHook', 'CompileForwardHook', 'EpochSeedHook',
    'FiniteLossHook'
]

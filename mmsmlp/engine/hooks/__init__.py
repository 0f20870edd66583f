# Copyright (c) mmsmlp contributors. All rights reserved.
from .atomic_checkpoint_hook import AtomicCheckpointHook
from .compile_forward_hook import CompileForwardHook
from .epoch_seed_hook import EpochSeedHook
from .finite_loss_hook import FiniteLossHook

__all__ = [
    'AtomicCheckpointHook', 'CompileForwardHook', 'EpochSeedHook',
    'FiniteLossHook'
]

# Copyright (c) mmsmlp contributors. All rights reserved.
from .checkpoint_hook import CheckpointHook
from .epoch_seed_hook import EpochSeedHook
from .finite_loss_hook import FiniteLossHook
from .raw_and_ema_hook import RawAndEMAHook

__all__ = [
    'CheckpointHook', 'EpochSeedHook', 'FiniteLossHook', 'RawAndEMAHook'
]

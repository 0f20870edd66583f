# Copyright (c) mmsmlp contributors. All rights reserved.
from .channels_last_hook import ChannelsLastHook
from .compile_forward_hook import CompileForwardHook
from .cuda_graph_hook import CUDAGraphHook
from .deferred_runtime_info_hook import DeferredRuntimeInfoHook
from .epoch_seed_hook import EpochSeedHook
from .finite_loss_hook import FiniteLossHook
from .gc_freeze_hook import GCFreezeHook
from .loader_sharing_hook import LoaderSharingHook
from .raw_and_ema_hook import RawAndEMAHook
from .safe_checkpoint_hook import SafeCheckpointHook

__all__ = [
    'ChannelsLastHook', 'CompileForwardHook', 'CUDAGraphHook',
    'DeferredRuntimeInfoHook', 'EpochSeedHook', 'FiniteLossHook',
    'GCFreezeHook', 'LoaderSharingHook', 'RawAndEMAHook', 'SafeCheckpointHook'
]

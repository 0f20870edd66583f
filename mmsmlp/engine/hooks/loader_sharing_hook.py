# Copyright (c) mmsmlp contributors. All rights reserved.
"""How data-loader workers hand their batches to the training process."""
import sys
from typing import Optional

import torch.multiprocessing as mp
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class LoaderSharingHook(Hook):
    """Sets torch.multiprocessing's sharing strategy (and optionally
    Python's thread switch interval) for the run, before the loaders' worker
    processes start; the previous settings come back after the run.

    Each tensor of a batch crosses from a worker to the training process in
    shared memory. With PyTorch's default on Linux, ``file_descriptor``,
    each tensor's descriptor is fetched over a socket from the worker: an
    mmpretrain batch of 128 holds 129 tensors (the images and one label per
    sample), so the pin-memory thread that receives it releases and
    re-takes the GIL a few hundred times per batch. While the main thread
    runs Python without waiting for the GPU (as the configs' training step
    does), each re-take waits for the main thread's switch interval: on one
    H200 with sMLPNet-T's config this starved the loader (data wait 0.03-0.04
    s per iteration instead of 0.001). ``file_system`` passes a file name
    instead, opened without the socket; PyTorch's ``torch_shm_manager``
    removes the files when the processes are gone. ``switch_interval``
    (seconds; ``sys.setswitchinterval``, Python's default 0.005) lets
    waiting threads take the GIL sooner. Workers inherit the strategy when
    they are forked (mmengine's default ``mp_start_method='fork'``); spawned
    workers keep PyTorch's default.

    Args:
        sharing_strategy (str): One of
            ``torch.multiprocessing.get_all_sharing_strategies()``.
            Defaults to ``'file_system'``.
        switch_interval (float, optional): Python's thread switch interval
            for the run. Defaults to None (unchanged).
    """
    priority = 'VERY_HIGH'

    def __init__(self,
                 sharing_strategy: str = 'file_system',
                 switch_interval: Optional[float] = None) -> None:
        strategies = sorted(mp.get_all_sharing_strategies())
        if sharing_strategy not in strategies:
            raise ValueError(f'LoaderSharingHook: sharing_strategy must be '
                             f'one of {strategies}, got {sharing_strategy!r}')
        if switch_interval is not None and not switch_interval > 0:
            raise ValueError('LoaderSharingHook: switch_interval must be a '
                             f'positive number of seconds or None, got '
                             f'{switch_interval!r}')
        self.sharing_strategy = sharing_strategy
        self.switch_interval = switch_interval
        self._previous = None

    def before_run(self, runner) -> None:
        self._previous = (mp.get_sharing_strategy(), sys.getswitchinterval())
        mp.set_sharing_strategy(self.sharing_strategy)
        if self.switch_interval is not None:
            sys.setswitchinterval(self.switch_interval)

    def after_run(self, runner) -> None:
        if self._previous is not None:
            strategy, interval = self._previous
            mp.set_sharing_strategy(strategy)
            sys.setswitchinterval(interval)
            self._previous = None

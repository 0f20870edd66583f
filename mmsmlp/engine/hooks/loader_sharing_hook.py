# Copyright (c) mmsmlp contributors. All rights reserved.
"""How data-loader workers hand their batches to the training process,
and their end."""
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

    After the run, the hook also stops the loaders' persistent workers
    (``persistent_workers=True``, the configs' setting), as a DataLoader does
    when its iterator is deleted, and before the strategy comes back. Left
    to the interpreter's exit, torch joins each persistent worker for 5 s
    without telling it to stop, then kills it (pytorch/pytorch#81794,
    reported with torch 1.12, seen with 2.11): on one H200,
    ``tools/train.py`` with 12 train and 12 val workers took about 2
    minutes to exit after its last validation, 3 s with the hook. A loader
    used again after the run starts new workers.

    Args:
        sharing_strategy (str): One of
            ``torch.multiprocessing.get_all_sharing_strategies()``.
            Defaults to ``'file_system'``.
        switch_interval (float, optional): Python's thread switch interval
            for the run. Defaults to None (unchanged).
        stop_workers (bool): Stop the train, val and test loaders' persistent
            workers after the run. Defaults to True.
    """
    priority = 'VERY_HIGH'

    def __init__(self,
                 sharing_strategy: str = 'file_system',
                 switch_interval: Optional[float] = None,
                 stop_workers: bool = True) -> None:
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
        self.stop_workers = stop_workers
        self._previous = None
        self._loaders = []  # the loaders the run iterated

    def _record(self, loader) -> None:
        if not any(loader is seen for seen in self._loaders):
            self._loaders.append(loader)

    def before_run(self, runner) -> None:
        self._previous = (mp.get_sharing_strategy(), sys.getswitchinterval())
        mp.set_sharing_strategy(self.sharing_strategy)
        if self.switch_interval is not None:
            sys.setswitchinterval(self.switch_interval)

    # the loops' loaders, once each loop is built (at its start)
    def before_train(self, runner) -> None:
        self._record(runner.train_dataloader)

    def before_val(self, runner) -> None:
        self._record(runner.val_dataloader)

    def before_test(self, runner) -> None:
        self._record(runner.test_dataloader)

    def after_run(self, runner) -> None:
        if self.stop_workers:
            for loader in self._loaders:
                # a DataLoader keeps an iterator for persistent workers only
                iterator = getattr(loader, '_iterator', None)
                if hasattr(iterator, '_shutdown_workers'):
                    iterator._shutdown_workers()
                    loader._iterator = None  # the next iter() starts workers
        self._loaders = []
        if self._previous is not None:
            strategy, interval = self._previous
            mp.set_sharing_strategy(strategy)
            sys.setswitchinterval(interval)
            self._previous = None

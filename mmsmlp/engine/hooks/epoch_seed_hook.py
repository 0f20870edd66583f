# Copyright (c) mmsmlp contributors. All rights reserved.
"""Makes each training epoch's randomness a function of (seed, epoch)."""
import multiprocessing
import random

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from torch.utils.data import get_worker_info


def derive_seed(*entropy: int) -> int:
    """A 32-bit seed mixed from integers (so that e.g. seed 0 at epoch 1 and
    seed 1 at epoch 0 do not collide)."""
    sequence = np.random.SeedSequence([int(x) % 2**63 for x in entropy])
    return int(sequence.generate_state(1)[0])


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's global RNG and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class SeedWorkerAtEpoch:
    """First step of a training pipeline (added by :class:`EpochSeedHook`):
    in a data-loader worker, re-seeds at the first sample of every epoch from
    ``(seed, epoch, rank, worker id)``; in the main process it does nothing
    (the hook seeds that). ``epoch`` is shared memory the hook updates, so
    persistent workers see it too."""

    def __init__(self, seed: int, rank: int, epoch):
        self.seed = seed
        self.rank = rank
        self.epoch = epoch
        self._seeded_epoch = None

    def __call__(self, results):
        worker = get_worker_info()
        if worker is not None and self._seeded_epoch != self.epoch.value:
            self._seeded_epoch = self.epoch.value
            seed_everything(
                derive_seed(self.seed, self.epoch.value, self.rank,
                            worker.id))
        return results

    def __repr__(self):
        return f'{self.__class__.__name__}(seed={self.seed})'


def _pipelines(dataset):
    """The ``Compose`` pipelines of a dataset and of the datasets it wraps
    (``dataset`` / ``datasets`` of ConcatDataset, RepeatDataset, ...)."""
    pipeline = getattr(dataset, 'pipeline', None)
    if isinstance(getattr(pipeline, 'transforms', None), list):
        yield pipeline
    inner = getattr(dataset, 'dataset', None)
    if inner is not None:
        yield from _pipelines(inner)
    for inner in getattr(dataset, 'datasets', None) or []:
        yield from _pipelines(inner)


@HOOKS.register_module()
class EpochSeedHook(Hook):
    """Re-seeds all randomness at the start of every training epoch from
    ``(runner.seed, epoch)``.

    mmengine seeds python, numpy and torch once, when the Runner is built,
    and does not save their states in checkpoints: a run resumed at epoch N
    draws different augmentations (and dropout, Mixup, ...) than the same
    run without the interruption. With this hook an epoch's randomness no
    longer depends on what ran before it, so a resumed run equals an
    unbroken one (with ``randomness=dict(deterministic=True)`` bit for bit).

    Data-loader workers (persistent or not) are re-seeded too, at their first
    sample of each epoch, from ``(seed, epoch, rank, worker id)``: for that
    the hook puts :class:`SeedWorkerAtEpoch` first in the training dataset's
    pipeline(s).

    Registered in mmengine's root ``HOOKS``, so every scope finds it.
    Iteration-based loops have one "epoch": there it only seeds the start.
    """
    priority = 'VERY_HIGH'  # before anything that draws random numbers

    def __init__(self, seed_workers: bool = True):
        self.seed_workers = seed_workers
        self._epoch = None

    def before_train(self, runner) -> None:
        # Shared memory: workers are forked or spawned after this point.
        self._epoch = multiprocessing.RawValue('q', -1)
        if not self.seed_workers:
            return
        step = SeedWorkerAtEpoch(runner.seed, get_rank(), self._epoch)
        for pipeline in _pipelines(runner.train_dataloader.dataset):
            pipeline.transforms.insert(0, step)

    def before_train_epoch(self, runner) -> None:
        if self._epoch is not None:
            self._epoch.value = runner.epoch
        seed_everything(derive_seed(runner.seed, runner.epoch))

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Python's garbage collector kept off the objects a run built before its
loop."""
import gc

from mmengine.hooks import Hook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class GCFreezeHook(Hook):
    """Moves every Python object that exists when the training (or test)
    loop starts into the collector's permanent generation
    (``gc.freeze()``, after a ``gc.collect()``); the run's end
    (``after_run``) puts them back (``gc.unfreeze()``).

    A full (generation 2) collection walks every tracked object of the
    process. A Runner's process holds about half a million once torch,
    mmengine, mmpretrain, the model, the datasets and the hooks are built,
    and Python starts such a collection whenever the objects that survived
    younger collections reach a quarter of them: in
    ``tools/analysis_tools/train_speed.py``'s 187-iteration runs of
    sMLPNet-T (one H100), one iteration took 0.6 s instead of 0.05 while a
    0.57 s collection ran, the GPU idle, and validation had another.
    Frozen objects are not walked; objects made during
    the loop are collected as before, and frozen ones are still freed when
    their reference count drops to zero (only reference cycles among them
    wait for the unfreeze). Data-loader workers forked afterwards inherit
    the frozen generation, so their own collections do not touch (and
    copy) the parent's pages either (Python's ``gc.freeze`` documentation).
    Objects frozen before the run (by the caller) stay frozen after it. A
    run that stops with an exception skips mmengine's ``after_run``: the
    objects stay frozen (their reference cycles uncollected) until the
    process ends or ``gc.unfreeze()``.

    Args:
        enabled (bool): Defaults to True.
    """
    priority = 'LOWEST'

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        # whether the run's end thaws (None: not frozen in this run);
        # gc.unfreeze() thaws everything, so only if nothing was frozen
        # before (by the caller)
        self._thaw = None

    def _freeze(self) -> None:
        if self.enabled and self._thaw is None:
            self._thaw = gc.get_freeze_count() == 0
            gc.collect()
            gc.freeze()

    def before_train(self, runner) -> None:
        self._freeze()

    def before_test(self, runner) -> None:
        self._freeze()

    def after_run(self, runner) -> None:
        if self._thaw:
            gc.unfreeze()
        self._thaw = None

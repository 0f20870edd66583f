# Copyright (c) mmsmlp contributors. All rights reserved.
"""mmengine's CheckpointHook, made safe against a kill while it saves."""
import os
import os.path as osp
import shutil
from contextlib import contextmanager

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook as _CheckpointHook
from mmengine.registry import HOOKS

from ...compat import fsync_file


class _WorkDirView:
    """The runner, seen with another ``work_dir`` (where the parent class
    writes ``last_checkpoint``); everything else is the runner's own."""

    def __init__(self, runner, work_dir: str):
        self._runner = runner
        self.work_dir = work_dir

    def __getattr__(self, name):
        return getattr(self._runner, name)


# Replaces mmengine's CheckpointHook under the same name in mmengine's root
# registry (force=True), so every config of every scope (mmpretrain, mmdet,
# mmseg: `default_hooks.checkpoint.type='CheckpointHook'`) gets it with no
# edit. The upstream class is still importable from mmengine.hooks.
@HOOKS.register_module(name='CheckpointHook', force=True)
class CheckpointHook(_CheckpointHook):
    """mmengine's ``CheckpointHook`` with a crash-safe save order.

    mmengine 0.10.7 deletes the oldest checkpoint (``max_keep_ckpts``, and
    the previous best one with ``save_best``) *before* writing the new one
    and rewrites ``last_checkpoint`` in place: a kill in between leaves
    ``last_checkpoint`` pointing at a deleted file (or an empty
    ``last_checkpoint``), and ``--resume`` fails. Here old checkpoints are
    deleted only after the new one and ``last_checkpoint`` are complete, and
    ``last_checkpoint`` is replaced atomically. (The checkpoint file itself
    is written atomically by mmsmlp's ``LocalBackend.put``, see
    ``mmsmlp/compat.py``.) Arguments are mmengine's.
    """

    _pending_removals = None

    @contextmanager
    def _defer_removals(self):
        """Collect the file backend's removals and run them only if the
        block succeeds. Re-entrant: the outermost block runs them."""
        if self._pending_removals is not None:
            yield
            return
        backend = self.file_backend
        pending = self._pending_removals = []
        backend.remove = lambda path: pending.append((type(backend).remove,
                                                      path))
        backend.rmtree = lambda path: pending.append((type(backend).rmtree,
                                                      path))
        try:
            yield
        finally:
            del backend.remove, backend.rmtree  # the class's methods again
            self._pending_removals = None
        for remove, path in pending:
            remove(backend, path)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        with self._defer_removals():
            super()._save_best_checkpoint(runner, metrics)

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not is_main_process():  # the parent only saves on rank 0
            return super()._save_checkpoint_with_step(runner, step, meta)
        with self._defer_removals():
            # The parent writes `last_checkpoint` into a side folder; it
            # then replaces the real one in one step.
            side = osp.join(runner.work_dir, '.last_checkpoint.tmp')
            os.makedirs(side, exist_ok=True)
            try:
                super()._save_checkpoint_with_step(
                    _WorkDirView(runner, side), step, meta)
                written = osp.join(side, 'last_checkpoint')
                fsync_file(written)
                os.replace(written, osp.join(runner.work_dir,
                                             'last_checkpoint'))
            finally:
                shutil.rmtree(side, ignore_errors=True)

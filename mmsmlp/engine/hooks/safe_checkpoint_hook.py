# Copyright (c) mmsmlp contributors. All rights reserved.
"""mmengine's CheckpointHook, made safe: atomic writes, and files that load
weights-only."""
import errno
import os
import os.path as osp
import shutil
import uuid
from contextlib import contextmanager

from mmengine.dist import is_main_process
from mmengine.fileio import get_file_backend
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS

from ...compat.torch_checkpoint import from_plain_data, to_plain_data


def fsync_file(path: str) -> None:
    """Flush a written file's data to disk."""
    with open(path, 'rb+') as f:
        os.fsync(f.fileno())


def _checkpoint_size_hint(runner, folder: str) -> int:
    """Bytes a checkpoint of this run takes: the newest ``.pth`` in
    ``folder``, else the model's parameters and buffers (the optimizer
    state comes on top of that)."""
    sizes = [
        (osp.getmtime(p), osp.getsize(p)) for p in
        (osp.join(folder, f) for f in os.listdir(folder) if f.endswith('.pth'))
        if osp.isfile(p)
    ]
    if sizes:
        return max(sizes)[1]
    return sum(t.numel() * t.element_size()
               for t in runner.model.state_dict().values())


class _AtomicSaveView:
    """The runner, with ``save_checkpoint`` writing a temporary file in the
    same folder that is fsynced and renamed over the final path
    (``os.replace``: atomic), and optionally another ``work_dir`` (where the
    parent class writes ``last_checkpoint``). Everything else is the
    runner's own."""

    def __init__(self, runner, work_dir: str = None):
        self._runner = runner
        self.work_dir = work_dir or runner.work_dir

    def __getattr__(self, name):
        return getattr(self._runner, name)

    def save_checkpoint(self, out_dir, filename, *args, **kwargs):
        backend_args = kwargs.get('backend_args')
        if not is_main_process() or not isinstance(
                get_file_backend(out_dir, backend_args=backend_args),
                LocalBackend):
            # other ranks write nothing; remote backends have no rename
            return self._runner.save_checkpoint(out_dir, filename, *args,
                                                **kwargs)
        final = osp.join(out_dir, filename)
        tmp_name = f'.{filename}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp'
        tmp = osp.join(out_dir, tmp_name)
        try:
            self._runner.save_checkpoint(out_dir, tmp_name, *args, **kwargs)
            fsync_file(tmp)
            os.replace(tmp, final)
        except BaseException as e:
            if osp.exists(tmp):
                os.remove(tmp)
            if isinstance(e, OSError) and e.errno == errno.ENOSPC:
                need = _checkpoint_size_hint(self._runner, out_dir)
                raise OSError(
                    errno.ENOSPC,
                    f'No space left on the device to save {final} (a '
                    f'checkpoint of this run takes about {need / 2**20:.0f} '
                    'MiB; the previous checkpoint is deleted only after the '
                    'new one is complete, so the folder needs room for one '
                    'more). The earlier checkpoints are intact.') from e
            raise


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` with crash-safe writes and checkpoints
    that load weights-only.

    **Atomic.** mmengine 0.10.7 writes each checkpoint in place (a kill
    mid-write leaves a truncated ``epoch_N.pth``), deletes the oldest
    checkpoint (``max_keep_ckpts``, and the previous best one with
    ``save_best``) *before* writing the new one, and rewrites
    ``last_checkpoint`` in place: a kill in between leaves
    ``last_checkpoint`` pointing at a deleted or partial file, and
    ``--resume`` fails. Here a checkpoint is written to a temporary file
    that is renamed over the final name once complete, old checkpoints are
    deleted only after the new one and ``last_checkpoint`` are complete, and
    ``last_checkpoint`` is replaced atomically. A kill leaves at most a
    hidden ``.<name>.<pid>.<random>.tmp`` file. The price: the disk needs
    room for one more checkpoint than ``max_keep_ckpts``.

    **Weights-only.** The Runner's checkpoints hold the message hub's
    ``HistoryBuffer`` objects and numpy values, which ``torch.load``
    refuses by default since torch 2.6; they are written as plain data
    (tensors, numbers) and turned back when a checkpoint is loaded
    (:mod:`mmsmlp.compat.torch_checkpoint`), so the files load with
    ``weights_only=True`` everywhere, no allow-list needed.

    The project's configs use it (``default_hooks.checkpoint``); arguments
    are mmengine's. Registered in mmengine's root ``HOOKS``: every scope
    finds it.
    """

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # VERY_LOW priority (CheckpointHook's): after the other hooks added
        # their parts (EMA, ...)
        for key in ('meta', 'message_hub'):
            if key in checkpoint:
                checkpoint[key] = to_plain_data(checkpoint[key])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # before the Runner hands `message_hub` to the message hub (resume)
        for key in ('meta', 'message_hub'):
            if key in checkpoint:
                checkpoint[key] = from_plain_data(checkpoint[key])

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
            super()._save_best_checkpoint(_AtomicSaveView(runner), metrics)

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not is_main_process():  # the parent only saves on rank 0
            return super()._save_checkpoint_with_step(runner, step, meta)
        with self._defer_removals():
            # The parent writes `last_checkpoint` into a side folder; it
            # then replaces the real one in one step.
            side = osp.join(runner.work_dir,
                            f'.last_checkpoint.{os.getpid()}.tmp')
            os.makedirs(side, exist_ok=True)
            try:
                super()._save_checkpoint_with_step(
                    _AtomicSaveView(runner, side), step, meta)
                written = osp.join(side, 'last_checkpoint')
                fsync_file(written)
                os.replace(written, osp.join(runner.work_dir,
                                             'last_checkpoint'))
            finally:
                shutil.rmtree(side, ignore_errors=True)

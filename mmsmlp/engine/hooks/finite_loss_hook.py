# Copyright (c) mmsmlp contributors. All rights reserved.
"""Stops training at the first NaN or infinite loss, and refuses to save a
checkpoint holding NaN or infinite values."""
from typing import Iterator, List, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..optimizers import SkipNonFiniteOptimWrapper

# The parts of a Runner checkpoint that hold the model's numbers
# (``ema_state_dict`` when a hook of higher priority than FiniteLossHook's
# added it).
CHECKED_PARTS = ('state_dict', 'ema_state_dict', 'optimizer')


def _tensors(obj, prefix: str) -> Iterator[Tuple[str, torch.Tensor]]:
    """``(key, tensor)`` of each floating-point tensor in nested dicts and
    lists, keys joined with dots."""
    if isinstance(obj, torch.Tensor):
        if obj.is_floating_point() or obj.is_complex():
            yield prefix, obj
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from _tensors(value, f'{prefix}.{key}')
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            yield from _tensors(value, f'{prefix}.{i}')


def non_finite_keys(checkpoint: dict) -> List[str]:
    """The keys of the checkpoint's tensors that hold NaN or infinite
    values (model, EMA model and optimizer state), with one device
    synchronisation per device."""
    named = [
        item for part in CHECKED_PARTS if part in checkpoint
        for item in _tensors(checkpoint[part], part)
    ]
    if not named:
        return []
    bad = {}
    for key, tensor in named:  # one flag per tensor, gathered per device
        bad.setdefault(tensor.device, []).append(
            (key, ~torch.isfinite(tensor).all()))
    keys = []
    for flags in bad.values():
        values = torch.stack([flag for _, flag in flags]).tolist()
        keys += [key for (key, _), is_bad in zip(flags, values) if is_bad]
    return keys


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Raises ``FloatingPointError`` naming the iteration and epoch as soon
    as the loss (or any logged loss term) is NaN or infinite, instead of
    training on with NaN weights. It runs first after each iteration, before
    a checkpoint or the EMA can take the broken weights.

    With :class:`~mmsmlp.engine.SkipNonFiniteOptimWrapper` (the opt-in to
    skip such steps) the step was not taken, and training goes on.

    Whatever the optimizer wrapper, a checkpoint whose model weights,
    buffers (BatchNorm statistics) or optimizer state hold a NaN or infinite
    value is not saved: the run stops with ``FloatingPointError`` naming the
    keys (checked in ``before_save_checkpoint``: one pass over the tensors
    per checkpoint). The checkpoints saved before stay the last good ones.
    (An EMA model averages these weights after this hook's check of each
    iteration, so it stays finite with them.)

    With ``check_interval=N`` (N > 1) the host reads the losses' finiteness
    every N iterations (and at each epoch's end, before each checkpoint and
    at the end of training) instead of after each iteration, where it would
    wait for the GPU to finish the step (a host synchronisation per
    iteration, which leaves the GPU idle while the host prepares the next
    batch). The error then names the first non-finite iteration, up to N - 1
    iterations after it; the weights (and the EMA in memory) may have taken
    those steps, but no checkpoint holding them is saved: before a
    checkpoint the pending losses are checked, and the checkpoint's tensors
    as always.

    Registered in mmengine's root ``HOOKS``: every scope finds it.

    Args:
        check_interval (int): Check the losses every this many iterations.
            Defaults to 1 (every iteration).
    """
    priority = 'VERY_HIGH'

    def __init__(self, check_interval: int = 1):
        if not isinstance(check_interval, int) or check_interval < 1:
            raise ValueError('FiniteLossHook: check_interval must be an '
                             f'integer >= 1, got {check_interval!r}')
        self.check_interval = check_interval
        self._pending = []  # (iteration, epoch, losses, flag) not yet read

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if not outputs or isinstance(runner.optim_wrapper,
                                     SkipNonFiniteOptimWrapper):
            return
        losses = {
            key: torch.as_tensor(value).detach()
            for key, value in outputs.items()
            if 'loss' in key  # as mmengine's BaseModel.parse_losses
        }
        if not losses:
            return
        if self.check_interval == 1:
            for key, value in losses.items():
                if not torch.isfinite(value).all():
                    self._raise(key, value, runner.iter + 1, runner.epoch + 1)
            return
        # one flag tensor per iteration, on the losses' device: no host read
        flags = [(~torch.isfinite(v)).any().reshape(1) for v in losses.values()]
        flag = flags[0] if len(flags) == 1 else torch.cat(
            [f.to(flags[0].device) for f in flags]).any().reshape(1)
        self._pending.append((runner.iter + 1, runner.epoch + 1, losses, flag))
        if (self.every_n_train_iters(runner, self.check_interval)
                or self.end_of_epoch(runner.train_dataloader, batch_idx)
                or self.is_last_train_iter(runner)):
            self.check_pending()

    def check_pending(self) -> None:
        """Read the pending iterations' flags (one copy to the host) and
        raise for the first non-finite loss."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        bad = torch.cat([flag.to(pending[0][3].device)
                         for *_, flag in pending]).tolist()
        for (iteration, epoch, losses, _), is_bad in zip(pending, bad):
            if is_bad:
                for key, value in losses.items():
                    if not torch.isfinite(value).all():
                        self._raise(key, value, iteration, epoch,
                                    f' (losses checked every '
                                    f'{self.check_interval} iterations)')

    @staticmethod
    def _raise(key, value, iteration, epoch, note=''):
        name = 'loss' if key == 'loss' else f'loss term {key!r}'
        raise FloatingPointError(
            f'{name} is {value.float().sum().item()} at iteration '
            f'{iteration} (epoch {epoch}){note}')

    def after_train_epoch(self, runner) -> None:
        self.check_pending()

    def after_train(self, runner) -> None:
        self.check_pending()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        self.check_pending()
        keys = non_finite_keys(checkpoint)
        if keys:
            shown = ', '.join(keys[:5]) + (
                f' and {len(keys) - 5} more' if len(keys) > 5 else '')
            raise FloatingPointError(
                f'Not saving the checkpoint of epoch {runner.epoch} / '
                f'iteration {runner.iter}: NaN or infinite values in '
                f'{shown}. The run diverged; the checkpoints saved before '
                'are the last good ones.')

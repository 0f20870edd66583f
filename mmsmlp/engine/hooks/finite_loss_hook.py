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

    Registered in mmengine's root ``HOOKS``: every scope finds it.
    """
    priority = 'VERY_HIGH'

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if not outputs or isinstance(runner.optim_wrapper,
                                     SkipNonFiniteOptimWrapper):
            return
        for key, value in outputs.items():
            if 'loss' not in key:  # as mmengine's BaseModel.parse_losses
                continue
            value = torch.as_tensor(value).detach()
            if not torch.isfinite(value).all():
                name = 'loss' if key == 'loss' else f'loss term {key!r}'
                raise FloatingPointError(
                    f'{name} is {value.float().sum().item()} at iteration '
                    f'{runner.iter + 1} (epoch {runner.epoch + 1})')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        keys = non_finite_keys(checkpoint)
        if keys:
            shown = ', '.join(keys[:5]) + (
                f' and {len(keys) - 5} more' if len(keys) > 5 else '')
            raise FloatingPointError(
                f'Not saving the checkpoint of epoch {runner.epoch} / '
                f'iteration {runner.iter}: NaN or infinite values in '
                f'{shown}. The run diverged; the checkpoints saved before '
                'are the last good ones.')

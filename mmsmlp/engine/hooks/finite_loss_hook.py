# Copyright (c) mmsmlp contributors. All rights reserved.
"""Stops training at the first NaN or infinite loss."""
import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from ..optimizers import SkipNonFiniteOptimWrapper


@HOOKS.register_module()
class FiniteLossHook(Hook):
    """Raises ``FloatingPointError`` naming the iteration and epoch as soon
    as the loss (or any logged loss term) is NaN or infinite, instead of
    training on with NaN weights. It runs first after each iteration, before
    a checkpoint or the EMA can take the broken weights.

    With :class:`~mmsmlp.engine.SkipNonFiniteOptimWrapper` (the opt-in to
    skip such steps) the step was not taken, and training goes on.
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

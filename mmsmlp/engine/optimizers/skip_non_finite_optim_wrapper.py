# Copyright (c) mmsmlp contributors. All rights reserved.
"""An optimizer wrapper that skips steps whose loss is NaN or infinite."""
from typing import Dict, Optional

import torch
from mmengine.dist import all_reduce
from mmengine.logging import MessageHub, MMLogger
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class SkipNonFiniteOptimWrapper(OptimWrapper):
    """mmengine's ``OptimWrapper`` that skips the backward pass and the
    optimizer step when the loss is not finite, so one bad batch does not
    turn the weights into NaN.

    Each skip logs a warning with the iteration and the running count, and
    the count is logged with the training scalars as ``skipped_steps``.
    In distributed training every rank skips when the loss of any rank is
    not finite (one all-reduce of a flag per iteration). Opt in with
    ``optim_wrapper = dict(type='SkipNonFiniteOptimWrapper', ...)``;
    :class:`~mmsmlp.engine.FiniteLossHook` then lets training go on.
    Arguments are ``OptimWrapper``'s.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_skipped = 0

    def update_params(self,
                      loss: torch.Tensor,
                      step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        bad = (~torch.isfinite(loss.detach())).any().float().reshape(1)
        all_reduce(bad)  # no-op when not distributed
        if not bad.item():
            return super().update_params(loss, step_kwargs, zero_kwargs)
        self.num_skipped += 1
        hub = MessageHub.get_current_instance()
        hub.update_scalar('train/skipped_steps', self.num_skipped)
        iteration, epoch = hub.get_info('iter', 0) + 1, hub.get_info(
            'epoch', 0) + 1
        MMLogger.get_current_instance().warning(
            f'loss is {loss.detach().float().sum().item()} at iteration '
            f'{iteration} (epoch {epoch}): optimizer step skipped '
            f'({self.num_skipped} skipped so far)')

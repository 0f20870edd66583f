# Copyright (c) mmsmlp contributors. All rights reserved.
"""mmengine's exponential moving average, updated with foreach ops."""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import ExponentialMovingAverage
from mmengine.registry import MODELS


@MODELS.register_module()
class ForeachEMA(ExponentialMovingAverage):
    """mmengine's ``ExponentialMovingAverage`` (the same averages, state dict
    and arguments) with each update done by a few ``torch._foreach_*`` ops
    over all tensors instead of a Python loop of one op (one kernel launch)
    per tensor.

    ``update_parameters`` does what mmengine's does: at the first update it
    copies the model's parameters (and buffers with ``update_buffers``);
    then, every ``interval`` updates, ``avg.lerp_(src, momentum)`` on the
    floating-point ones (``torch._foreach_lerp_``, the same formula); without
    ``update_buffers`` the model's buffers are copied each time. The step
    counter stays the ``steps`` buffer (saved in ``ema_state_dict`` as
    before); a Python copy of it decides copy / average / skip, read from
    the buffer once after construction or ``load_state_dict`` (no read of a
    device tensor per update when ``device`` puts the buffer on a GPU).

    Use it with ``dict(type='EMAHook', ema_type='ForeachEMA', ...)``.
    Registered in mmengine's root ``MODELS``: every scope finds it.
    """

    def __init__(self,
                 model: nn.Module,
                 momentum: float = 0.0002,
                 interval: int = 1,
                 device: Optional[torch.device] = None,
                 update_buffers: bool = False) -> None:
        super().__init__(model, momentum, interval, device, update_buffers)
        self._host_steps: Optional[int] = None  # read from `steps` when None
        self.register_load_state_dict_post_hook(self._forget_host_steps)

    @staticmethod
    def _forget_host_steps(module, incompatible_keys) -> None:
        module._host_steps = None

    def update_parameters(self, model: nn.Module) -> None:
        if self._host_steps is None:
            self._host_steps = int(self.steps.item())
        src = (
            model.state_dict()
            if self.update_buffers else dict(model.named_parameters()))
        if self._host_steps == 0:
            avg = list(self.avg_parameters.values())
            torch._foreach_copy_(
                [p.data for p in avg],
                [src[k].data.to(p.device)
                 for k, p in self.avg_parameters.items()])
        elif self._host_steps % self.interval == 0:
            pairs = [(p.data, src[k].data.to(p.device))
                     for k, p in self.avg_parameters.items()
                     if p.dtype.is_floating_point]
            if pairs:
                avg, new = map(list, zip(*pairs))
                torch._foreach_lerp_(avg, new, self.momentum)
        if not self.update_buffers:
            pairs = [(b_avg.data, b_src.data.to(b_avg.device))
                     for b_avg, b_src in zip(self.module.buffers(),
                                             model.buffers())]
            if pairs:
                avg, new = map(list, zip(*pairs))
                torch._foreach_copy_(avg, new)
        self.steps += 1
        self._host_steps += 1

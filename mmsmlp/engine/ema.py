# Copyright (c) mmsmlp contributors. All rights reserved.
"""mmengine's exponential moving average, updated with foreach ops."""
import weakref
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
    per tensor, the tensors paired once per source model instead of at every
    update.

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
        self._pairs = None  # (source model, tensor lists), see _tensor_lists
        self.register_load_state_dict_post_hook(self._forget_host_steps)

    @staticmethod
    def _forget_host_steps(module, incompatible_keys) -> None:
        module._host_steps = None

    def _tensor_lists(self, model: nn.Module) -> dict:
        """The averaged and source tensors, paired as mmengine pairs them
        (by name; buffers in order), looked up once per source model (the
        Runner keeps its model's parameter and buffer objects): ``copy``
        (all averaged tensors), ``lerp`` (the floating-point ones) and
        ``buffers`` (copied every update without ``update_buffers``), each a
        list of ``(averaged, sources, device)`` groups of one dtype and
        device (see ``_by_dtype_and_device``). The tensors are the modules'
        own (parameters, buffers), so in-place updates and ``.data``
        assignments are seen."""
        if self._pairs is not None and self._pairs[0]() is model:
            return self._pairs[1]
        src = (
            model.state_dict(keep_vars=True)
            if self.update_buffers else dict(model.named_parameters()))
        copy = [(p, src[k]) for k, p in self.avg_parameters.items()]
        lerp = [(a, s) for a, s in copy if a.dtype.is_floating_point]
        buffers = [] if self.update_buffers else list(
            zip(self.module.buffers(), model.buffers()))
        lists = {
            name: _by_dtype_and_device(pairs)
            for name, pairs in (('copy', copy), ('lerp', lerp), ('buffers',
                                                                 buffers))
        }
        self._pairs = (weakref.ref(model), lists)
        return lists

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        if self._host_steps is None:
            self._host_steps = int(self.steps.item())
        lists = self._tensor_lists(model)
        if self._host_steps == 0:
            for avg, src, device in lists['copy']:
                torch._foreach_copy_(avg, _sources(src, device))
        elif self._host_steps % self.interval == 0:
            for avg, src, device in lists['lerp']:
                torch._foreach_lerp_(avg, _sources(src, device),
                                     self.momentum)
        for avg, src, device in lists['buffers']:
            torch._foreach_copy_(avg, _sources(src, device))
        self.steps += 1
        self._host_steps += 1


def _by_dtype_and_device(pairs) -> list:
    """``(averaged, source)`` tensor pairs as ``(averaged list, source list,
    device)`` groups of one dtype and device each (one foreach op per group);
    ``device`` is where the sources are copied first (mmengine's
    ``.to(device)``, for an average kept on another device), else None."""
    groups = {}
    for avg, src in pairs:
        to = avg.device if src.device != avg.device else None
        group = groups.setdefault((avg.dtype, avg.device, to), ([], [], to))
        group[0].append(avg)
        group[1].append(src)
    return list(groups.values())


def _sources(src: list, device) -> list:
    return src if device is None else [s.to(device) for s in src]

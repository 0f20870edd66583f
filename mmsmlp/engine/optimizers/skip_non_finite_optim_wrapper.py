# Copyright (c) mmsmlp contributors. All rights reserved.
"""An optimizer wrapper that skips steps whose loss is NaN or infinite."""
import math
from contextlib import contextmanager
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
from mmengine.dist import all_reduce
from mmengine.logging import MessageHub, MMLogger
from mmengine.optim import OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

# Buffers that a forward pass in training mode updates: the running
# statistics of BatchNorm (also SyncBN, mmcv's SyncBN) and of InstanceNorm
# with track_running_stats.
RUNNING_STATS = ('running_mean', 'running_var', 'num_batches_tracked')


def running_stat_buffers(model: nn.Module) -> List[torch.Tensor]:
    """The running-statistics buffers of ``model`` (see ``RUNNING_STATS``),
    each once."""
    found = {}
    for name, buffer in model.named_buffers():
        if buffer is not None and name.rsplit('.', 1)[-1] in RUNNING_STATS:
            found.setdefault(id(buffer), buffer)
    return list(found.values())


@OPTIM_WRAPPERS.register_module()
class SkipNonFiniteOptimWrapper(OptimWrapper):
    """mmengine's ``OptimWrapper`` that skips the backward pass and the
    optimizer step when the loss is not finite, so one bad batch does not
    turn the weights into NaN.

    A skipped step leaves no trace in the model: the forward pass of a
    training step updates the BatchNorm running statistics before the loss
    is known, so they are copied when the step starts (``optim_context``,
    which mmengine's ``train_step`` enters before the forward pass: one
    copy of the running statistics per iteration, a few hundred kB for
    sMLPNet-B) and put back when the step is skipped.

    Each skip logs a warning with the iteration and the running count, and
    the count is logged with the training scalars as ``skipped_steps`` (it
    is saved in checkpoints with the message hub and goes on counting after
    ``--resume``). A run that skips too many steps has diverged: it stops
    with ``FloatingPointError`` when it skips more than
    ``max_skipped_steps`` steps in all, or more than
    ``max_consecutive_skips`` in a row.

    In distributed training every rank skips when the loss of any rank is
    not finite (one all-reduce of a flag per iteration). Opt in with
    ``optim_wrapper = dict(type='SkipNonFiniteOptimWrapper', ...)``;
    :class:`~mmsmlp.engine.FiniteLossHook` then lets training go on (and
    still refuses to save a checkpoint holding NaN or infinite values).

    Args:
        max_skipped_steps (int | float | None): The most steps a run may
            skip: a count (int >= 0), or a fraction in (0, 1) of the run's
            iterations (``train_cfg``'s ``max_iters`` or ``max_epochs``
            times the iterations per epoch), rounded up. ``None``: no bound.
            Defaults to 0.05.
        max_consecutive_skips (int | None): The most steps skipped in a row
            (>= 1); ``None``: no bound. Defaults to 10.
        dtype (str, optional): It trains in fp32: ``None``, ``'auto'`` (the
            ImageNet configs' ``MixedPrecisionOptimWrapper`` setting, kept
            when only ``optim_wrapper.type`` is overridden) or
            ``'float32'``; any other value is refused.
        *args, **kwargs: ``OptimWrapper``'s arguments.
    """

    def __init__(self,
                 *args,
                 max_skipped_steps: Optional[Union[int, float]] = 0.05,
                 max_consecutive_skips: Optional[int] = 10,
                 dtype: Optional[str] = None,
                 **kwargs):
        if dtype not in (None, 'auto', 'float32'):
            raise ValueError(
                'SkipNonFiniteOptimWrapper trains in float32: '
                f"optim_wrapper.dtype must be 'auto' or 'float32', got "
                f'{dtype!r}')
        super().__init__(*args, **kwargs)
        if max_skipped_steps is not None and not (
            (isinstance(max_skipped_steps, int) and max_skipped_steps >= 0) or
            (isinstance(max_skipped_steps, float) and
             0 < max_skipped_steps < 1)):
            raise ValueError(
                'max_skipped_steps must be None, an int >= 0 (a count) or a '
                f'float in (0, 1) (a fraction of the run), got '
                f'{max_skipped_steps!r}')
        if max_consecutive_skips is not None and not (
                isinstance(max_consecutive_skips, int)
                and max_consecutive_skips >= 1):
            raise ValueError('max_consecutive_skips must be None or an int '
                             f'>= 1, got {max_consecutive_skips!r}')
        self.max_skipped_steps = max_skipped_steps
        self.max_consecutive_skips = max_consecutive_skips
        self.num_skipped = 0
        self.num_consecutive = 0
        self._stats: List[torch.Tensor] = []
        self._saved: List[torch.Tensor] = []
        self._stats_of: Optional[int] = None  # id of the model of _stats

    def initialize_count_status(self, model: nn.Module, init_counts: int,
                                max_counts: int) -> None:
        """Called by the training loop before the first iteration: the
        skips counted before a resume come back from the message hub."""
        super().initialize_count_status(model, init_counts, max_counts)
        hub = MessageHub.get_current_instance()
        if 'train/skipped_steps' in hub.log_scalars:
            self.num_skipped = int(
                hub.get_scalar('train/skipped_steps').current())

    @property
    def allowed_skips(self) -> Optional[int]:
        """The bound of ``max_skipped_steps`` as a count (None: none, or a
        fraction while the run's length is unknown)."""
        bound = self.max_skipped_steps
        if isinstance(bound, float):
            if self._max_counts <= 0:
                return None
            return math.ceil(bound * self._max_counts)
        return bound

    @contextmanager
    def optim_context(self, model: nn.Module):
        """mmengine's context of one training step, which starts with a
        copy of the model's running statistics."""
        if self._stats_of != id(model):
            self._stats = running_stat_buffers(model)
            self._saved = [b.detach().clone() for b in self._stats]
            self._stats_of = id(model)
        elif self._stats:
            torch._foreach_copy_(self._saved, self._stats)
        with super().optim_context(model):
            yield

    def update_params(self,
                      loss: torch.Tensor,
                      step_kwargs: Optional[Dict] = None,
                      zero_kwargs: Optional[Dict] = None) -> None:
        bad = (~torch.isfinite(loss.detach())).any().float().reshape(1)
        all_reduce(bad)  # no-op when not distributed
        if not bad.item():
            self.num_consecutive = 0
            return super().update_params(loss, step_kwargs, zero_kwargs)
        if self._stats:  # the forward pass's update of the statistics
            torch._foreach_copy_(self._stats, self._saved)
        self.num_skipped += 1
        self.num_consecutive += 1
        hub = MessageHub.get_current_instance()
        hub.update_scalar('train/skipped_steps', self.num_skipped)
        iteration, epoch = hub.get_info('iter', 0) + 1, hub.get_info(
            'epoch', 0) + 1
        value = loss.detach().float().sum().item()
        MMLogger.get_current_instance().warning(
            f'loss is {value} at iteration {iteration} (epoch {epoch}): '
            f'optimizer step skipped ({self.num_skipped} skipped so far)')
        allowed = self.allowed_skips
        if allowed is not None and self.num_skipped > allowed:
            run = (f' of the run\'s {self._max_counts} iterations'
                   if isinstance(self.max_skipped_steps, float) else '')
            raise FloatingPointError(
                f'{self.num_skipped} optimizer steps skipped (non-finite '
                f'loss, last at iteration {iteration}, epoch {epoch}): more '
                f'than max_skipped_steps={self.max_skipped_steps} allows '
                f'({allowed}{run}). The run diverges: lower the learning '
                'rate, or clip gradients (optim_wrapper.clip_grad).')
        if (self.max_consecutive_skips is not None
                and self.num_consecutive > self.max_consecutive_skips):
            first = iteration - self.num_consecutive + 1
            raise FloatingPointError(
                f'{self.num_consecutive} optimizer steps in a row skipped '
                f'(non-finite loss, iterations {first} to {iteration}, epoch '
                f'{epoch}): more than max_consecutive_skips='
                f'{self.max_consecutive_skips}. The run diverges: lower the '
                'learning rate, or clip gradients (optim_wrapper.clip_grad).')

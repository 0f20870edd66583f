# Copyright (c) mmsmlp contributors. All rights reserved.
"""timm's cosine learning-rate curve (DeiT's and the official sMLPNet's)."""
import math

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler
from mmengine.registry import PARAM_SCHEDULERS


def timm_cosine_lr(t: float, base_lr: float, t_initial: float,
                   lr_min: float, warmup_t: float,
                   warmup_lr_init: float) -> float:
    """The learning rate of timm's ``CosineLRScheduler`` (v0.3.2, one cycle,
    ``warmup_prefix=False``, no noise) at step ``t``.

    The warm-up rises linearly from ``warmup_lr_init`` for ``warmup_t``
    steps, laid over the start of the cosine: the cosine counts from step 0,
    not from the end of the warm-up, so at ``t = warmup_t`` the curve drops
    from the warm-up line to the cosine. From ``t_initial`` on: ``lr_min``.
    """
    if t < warmup_t:
        return warmup_lr_init + t * (base_lr - warmup_lr_init) / warmup_t
    if t >= t_initial:
        return lr_min
    return lr_min + 0.5 * (base_lr - lr_min) * (
        1 + math.cos(math.pi * t / t_initial))


@PARAM_SCHEDULERS.register_module()
class TimmCosineLR(LRSchedulerMixin, _ParamScheduler):
    """timm's ``CosineLRScheduler`` curve as an mmengine scheduler: the
    schedule of the official sMLPNet training script (DeiT's ``main.py``
    with timm 0.3.2, ``--sched cosine``), see :func:`timm_cosine_lr`.

    mmengine's ``LinearLR`` + ``CosineAnnealingLR`` cannot draw it: chained,
    the cosine starts where the warm-up ends, and with overlapping ranges
    both multiply the learning rate. This scheduler computes each value from
    the step count (closed form), so resuming needs nothing but the step.

    ``base_lr`` is each parameter group's learning rate when the scheduler
    is built (after ``auto_scale_lr``); ``warmup_lr_init`` and ``lr_min`` are
    absolute values, as in timm (the official script scales only the peak).

    Args:
        optimizer (Optimizer or OptimWrapper): The optimizer.
        t_initial (int): Length of the cosine, in steps (epochs when
            ``by_epoch``), counted from ``begin``. The official: the number
            of training epochs (300).
        lr_min (float): The final learning rate. Defaults to 0.
        warmup_t (int): Warm-up steps. Defaults to 0 (none).
        warmup_lr_init (float): The learning rate at step 0 of the warm-up.
            Defaults to 0.
        delay (int): Use timm's value of step ``t - delay`` at step ``t``
            (and that of step 0 before). The official loop calls
            ``lr_scheduler.step(epoch)`` *after* training epoch ``epoch``, so
            it trains epoch ``e`` with timm's value for ``e - 1`` (epochs 0
            and 1 both at ``warmup_lr_init``): ``delay=1`` reproduces that.
            Defaults to 0.
        begin, end, last_step, by_epoch, verbose: as mmengine's schedulers.
            With ``convert_to_iter_based=True`` the step counts (``t_initial``,
            ``warmup_t``, ``delay``, ``begin``, ``end``) are converted from
            epochs to iterations: the same curve, drawn per iteration.
    """

    def __init__(self,
                 optimizer,
                 t_initial: int,
                 lr_min: float = 0.,
                 warmup_t: int = 0,
                 warmup_lr_init: float = 0.,
                 delay: int = 0,
                 begin: int = 0,
                 end: int = INF,
                 last_step: int = -1,
                 by_epoch: bool = True,
                 verbose: bool = False):
        if t_initial <= 0:
            raise ValueError(f'TimmCosineLR: t_initial must be > 0, got '
                             f'{t_initial}')
        if not 0 <= warmup_t <= t_initial:
            raise ValueError(f'TimmCosineLR: warmup_t must be in [0, '
                             f't_initial={t_initial}], got {warmup_t}')
        if delay < 0 or lr_min < 0 or warmup_lr_init < 0:
            raise ValueError(
                'TimmCosineLR: delay, lr_min and warmup_lr_init must be >= 0, '
                f'got {delay}, {lr_min} and {warmup_lr_init}')
        self.t_initial = t_initial
        self.lr_min = lr_min
        self.warmup_t = warmup_t
        self.warmup_lr_init = warmup_lr_init
        self.delay = delay
        super().__init__(
            optimizer,
            begin=begin,
            end=end,
            last_step=last_step,
            by_epoch=by_epoch,
            verbose=verbose)

    @classmethod
    def build_iter_from_epoch(cls,
                              *args,
                              t_initial,
                              warmup_t=0,
                              delay=0,
                              begin=0,
                              end=INF,
                              by_epoch=True,
                              epoch_length=None,
                              **kwargs):
        """The same curve stepped per iteration (``convert_to_iter_based``)."""
        if not by_epoch:
            raise ValueError('TimmCosineLR: convert_to_iter_based needs '
                             'by_epoch=True')
        if not epoch_length or epoch_length <= 0:
            raise ValueError('TimmCosineLR: epoch_length must be a positive '
                             f'integer, got {epoch_length}')
        return cls(
            *args,
            t_initial=t_initial * epoch_length,
            warmup_t=warmup_t * epoch_length,
            delay=delay * epoch_length,
            begin=int(begin * epoch_length),
            end=end if end == INF else int(end * epoch_length),
            by_epoch=False,
            **kwargs)

    def _get_value(self):
        t = max(self.last_step - self.delay, 0)
        return [
            timm_cosine_lr(t, base_lr, self.t_initial, self.lr_min,
                           self.warmup_t, self.warmup_lr_init)
            for base_lr in self.base_values
        ]

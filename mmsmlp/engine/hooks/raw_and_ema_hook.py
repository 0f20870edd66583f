# Copyright (c) mmsmlp contributors. All rights reserved.
"""A model EMA that is kept and reported beside the trained model."""
import copy
import logging
import numbers
from typing import Dict, Optional

import numpy as np
import torch
from mmengine.hooks import EMAHook
from mmengine.logging import print_log
from mmengine.registry import HOOKS
from mmengine.runner.amp import autocast


def _is_scalar(value) -> bool:
    """Whether the message hub logs ``value`` as a scalar (as mmengine's
    ``RuntimeInfoHook`` decides for the raw metrics)."""
    if isinstance(value, np.ndarray):
        return value.size == 1
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, numbers.Number)


@HOOKS.register_module()
class RawAndEMAHook(EMAHook):
    """Keeps an exponential moving average (EMA) of the model, as the
    official sMLPNet/DeiT training does (timm's ``ModelEma``), while the
    trained ("raw") model stays *the* model.

    mmengine's and mmpretrain's ``EMAHook`` swap the EMA weights in for
    validation, test and the saved ``state_dict``. The official script
    evaluates and reports the raw model and only keeps the EMA. Here:

    - each validation (and test) reports the raw model's metrics under their
      usual keys (the headline, e.g. ``accuracy/top1``, which ``save_best``
      follows) and then evaluates the EMA weights on the same data and adds
      their metrics with ``prefix`` (``ema/accuracy/top1``) to the results,
      the log and ``scalars.json``;
    - a checkpoint holds the raw weights in ``state_dict`` (what
      ``tools/test.py``, ``load_from`` and the dense configs'
      ``init_cfg=dict(type='Pretrained')`` load) and the EMA in
      ``ema_state_dict`` (``steps`` and ``module.<key>``, mmengine's layout);
    - loading a checkpoint (``--resume``, ``tools/test.py``) restores the
      EMA from ``ema_state_dict``; ``tools/test.py`` then reports both
      models. A checkpoint without one (converted official weights) starts
      the EMA as a copy of ``state_dict`` and is tested once, raw.

    The EMA pass runs the EMA copy's ``val_step``/``test_step`` directly (no
    swap of weights, no iteration hooks, e.g. no visualisation), under the
    loop's ``fp16`` autocast setting.

    Args:
        prefix (str): Prefix of the EMA's metric keys. Defaults to ``'ema/'``.
        **kwargs: mmengine ``EMAHook``'s arguments (``ema_type``,
            ``momentum``, ``update_buffers``, ``begin_iter``, ...). timm's
            ``ModelEma`` averages the whole state dict, buffers included
            (BatchNorm statistics): ``update_buffers=True`` matches it
            (integer buffers, ``num_batches_tracked``, are not averaged).
    """

    def __init__(self, prefix: str = 'ema/', **kwargs):
        super().__init__(**kwargs)
        if not prefix:
            raise ValueError('RawAndEMAHook: prefix must be a non-empty '
                             'string, or the EMA metrics would overwrite '
                             'the raw ones')
        self.prefix = prefix
        self._ema_from_checkpoint = False

    def before_run(self, runner) -> None:
        super().before_run(runner)
        self.ema_model.module.eval()  # it is only ever evaluated

    # The raw model is evaluated and saved as it is: no swapping.
    def before_val_epoch(self, runner) -> None:
        pass

    def before_test_epoch(self, runner) -> None:
        pass

    def after_val_epoch(self,
                        runner,
                        metrics: Optional[Dict[str, float]] = None) -> None:
        self._add_ema_metrics(runner, runner.val_loop, 'val', metrics)

    def after_test_epoch(self,
                         runner,
                         metrics: Optional[Dict[str, float]] = None) -> None:
        if self._ema_from_checkpoint:
            self._add_ema_metrics(runner, runner.test_loop, 'test', metrics)
        else:
            print_log(
                'RawAndEMAHook: the checkpoint has no `ema_state_dict`; '
                'only the model (`state_dict`) was tested', 'current')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['ema_state_dict'] = self.ema_model.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if 'ema_state_dict' in checkpoint:
            self.ema_model.load_state_dict(
                checkpoint['ema_state_dict'], strict=self.strict_load)
            self._ema_from_checkpoint = True
            return
        if runner._resume:
            print_log(
                'There is no `ema_state_dict` in the checkpoint: the EMA '
                'starts as a copy of `state_dict`', 'current', logging.WARNING)
        from mmengine.runner.checkpoint import load_state_dict
        load_state_dict(
            self.ema_model.module,
            copy.deepcopy(checkpoint['state_dict']),
            strict=self.strict_load)

    @torch.no_grad()
    def _add_ema_metrics(self, runner, loop, mode: str,
                         metrics: Optional[Dict[str, float]]) -> None:
        """Evaluate the EMA weights with ``loop``'s data and evaluator; add
        the prefixed results to ``metrics`` and the message hub."""
        model = self.ema_model.module
        step = model.val_step if mode == 'val' else model.test_step
        for data_batch in loop.dataloader:
            with autocast(enabled=getattr(loop, 'fp16', False)):
                outputs = step(data_batch)
            loop.evaluator.process(data_samples=outputs, data_batch=data_batch)
        ema_metrics = loop.evaluator.evaluate(len(loop.dataloader.dataset))
        for key, value in ema_metrics.items():
            key = f'{self.prefix}{key}'
            if metrics is not None:
                metrics[key] = value
            if _is_scalar(value):
                runner.message_hub.update_scalar(f'{mode}/{key}', value)
            else:
                runner.message_hub.update_info(f'{mode}/{key}', value)

# Copyright (c) mmsmlp contributors. All rights reserved.
"""mmengine's RuntimeInfoHook, reading the loss values when they are
logged instead of after every iteration."""
from collections import defaultdict
from typing import Optional

import torch
from mmengine.hooks import LoggerHook, RuntimeInfoHook
from mmengine.registry import HOOKS


@HOOKS.register_module()
class DeferredRuntimeInfoHook(RuntimeInfoHook):
    """:class:`mmengine.hooks.RuntimeInfoHook` whose training outputs (the
    loss values) reach the message hub in batches, when they are read.

    mmengine's hook puts each iteration's outputs into the message hub,
    which turns each tensor into a Python number (``.item()``): the host
    waits there for the GPU to finish the iteration, every iteration, so it
    cannot prepare the next batch while the GPU computes (with the step
    replayed as CUDA graphs, the GPU then idles while the host works). This
    hook keeps the (detached) output tensors and hands them to the message
    hub in one copy at the iterations where :class:`~mmengine.hooks.
    LoggerHook` reads them (every ``interval`` iterations and at the end of
    an epoch), at the first iteration (so the keys keep their order), before
    a checkpoint is saved and at the end of training. The message hub then
    holds the same values in the same order as with mmengine's hook: the
    same logs, and the same checkpoints (exact resume).

    A hook that reads ``train/...`` scalars of the message hub every
    iteration (none of mmengine's, mmpretrain's or this project's) would see
    them late; use mmengine's ``RuntimeInfoHook`` with it. Everything else
    (learning rates, iteration, epoch, validation metrics) is mmengine's
    hook unchanged.

    In a config: ``default_hooks = dict(runtime_info=dict(
    type='DeferredRuntimeInfoHook'))``.
    """

    def __init__(self) -> None:
        self._pending = []  # the outputs of the iterations not yet handed on

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        if outputs is not None:
            self._pending.append({
                key: value.detach() if isinstance(value, torch.Tensor) else
                value
                for key, value in outputs.items()
            })
        logger = next((h for h in runner.hooks if isinstance(h, LoggerHook)),
                      None)
        if (runner.iter == 0 or self.is_last_train_iter(runner)
                or self.end_of_epoch(runner.train_dataloader, batch_idx)
                or logger is None
                or self.every_n_inner_iters(batch_idx, logger.interval)
                or self.every_n_train_iters(runner, logger.interval)):
            self.flush(runner)

    def flush(self, runner) -> None:
        """Hand the pending outputs to the message hub, in their order, with
        one device-to-host copy per device and dtype."""
        pending, self._pending = self._pending, []
        groups = defaultdict(list)  # (device, dtype) -> tensors
        for outputs in pending:
            for value in outputs.values():
                if isinstance(value, torch.Tensor):
                    groups[value.device, value.dtype].append(value)
        numbers = {}
        for tensors in groups.values():
            values = torch.stack([t.reshape(()) for t in tensors]).tolist()
            numbers.update(zip(map(id, tensors), values))
        for outputs in pending:
            for key, value in outputs.items():
                runner.message_hub.update_scalar(
                    f'train/{key}', numbers.get(id(value), value))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._pending:
            self.flush(runner)
            if 'message_hub' in checkpoint:
                checkpoint['message_hub'] = runner.message_hub.state_dict()

    def after_train_epoch(self, runner) -> None:
        self.flush(runner)

    def after_train(self, runner) -> None:
        self.flush(runner)

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Compiles the model's forward before training."""
import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


@HOOKS.register_module()
class CompileForwardHook(Hook):
    """Compile the model's ``forward`` (network and loss) with
    ``torch.compile`` before training; ``train_step`` (mmengine's AMP,
    optimizer and logging code) runs eagerly around it.

    Why not mmengine's ``compile`` config key: mmengine 0.10.7 compiles the
    whole ``train_step``, which pulls its AMP and optimizer code into
    TorchDynamo (on torch 2.11 with ``AmpOptimWrapper`` it fails inside
    ``mmengine.runner.amp.autocast``), and the learning rate, a Python float
    the schedulers change every iteration, would be baked into the graph.

    It runs in ``before_train``, after ``before_run`` (so EMA's copy of the
    model is the plain one) and after loading or resuming. ``tools/train.py
    --compile [MODE]`` adds it; in a config::

        custom_hooks = [dict(type='CompileForwardHook', mode='reduce-overhead')]

    Args:
        **compile_kwargs: ``torch.compile`` arguments, e.g.
            ``mode='reduce-overhead'`` (CUDA graphs) or ``backend='eager'``.
    """

    priority = 'VERY_LOW'  # after every other hook's before_train

    def __init__(self, **compile_kwargs):
        self.compile_kwargs = compile_kwargs

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if getattr(model, '_forward_compiled', False):
            return
        model.forward = torch.compile(model.forward, **self.compile_kwargs)
        model._forward_compiled = True
        runner.logger.info(
            f'Compiled {type(model).__name__}.forward with torch.compile('
            f'{self.compile_kwargs}); the first iterations are slow.')

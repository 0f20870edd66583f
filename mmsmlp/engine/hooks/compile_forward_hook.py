# Copyright (c) mmsmlp contributors. All rights reserved.
"""Compiles the model's forward before training."""
import functools
from typing import Optional

import torch
import torch._functorch.config
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
        activation_memory_budget (float, optional): PyTorch's
            ``torch._functorch.config.activation_memory_budget`` while the
            forward compiles (set only around the compiled forward's calls,
            where compilation happens: the rest of the process keeps
            PyTorch's setting). Below 1, AOTAutograd keeps fewer
            activations for the backward and recomputes the rest there
            (with the default partitioner, any value below 1 drops the
            elementwise results sMLPNet's blocks would keep: see
            docs/benchmarks.md). Defaults to None: PyTorch's setting.
        **compile_kwargs: ``torch.compile`` arguments, e.g.
            ``mode='reduce-overhead'`` (CUDA graphs) or ``backend='eager'``.
    """

    priority = 'VERY_LOW'  # after every other hook's before_train

    def __init__(self,
                 activation_memory_budget: Optional[float] = None,
                 **compile_kwargs):
        if activation_memory_budget is not None and not (
                0 < activation_memory_budget <= 1):
            raise ValueError('CompileForwardHook: activation_memory_budget '
                             'must be in (0, 1], got '
                             f'{activation_memory_budget!r}')
        self.activation_memory_budget = activation_memory_budget
        self.compile_kwargs = compile_kwargs

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if getattr(model, '_forward_compiled', False):
            return
        forward = torch.compile(model.forward, **self.compile_kwargs)
        budget = ''
        if self.activation_memory_budget is not None:
            forward = with_memory_budget(forward,
                                         self.activation_memory_budget)
            budget = (' and activation_memory_budget='
                      f'{self.activation_memory_budget}')
        model.forward = forward
        model._forward_compiled = True
        runner.logger.info(
            f'Compiled {type(model).__name__}.forward with torch.compile('
            f'{self.compile_kwargs}){budget}; the first iterations are '
            'slow.')


def with_memory_budget(compiled, budget: float):
    """``compiled`` (a ``torch.compile`` result), whose compilations (at its
    first call and at recompilations, inside its calls) partition forward
    and backward with ``activation_memory_budget=budget``."""

    @functools.wraps(compiled)
    def forward(*args, **kwargs):
        with torch._functorch.config.patch(activation_memory_budget=budget):
            return compiled(*args, **kwargs)

    return forward

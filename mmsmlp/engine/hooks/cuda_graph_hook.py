# Copyright (c) mmsmlp contributors. All rights reserved.
"""Trains a submodule (the backbone) through CUDA graphs."""
from typing import Optional, Sequence, Union

from mmengine.hooks import Hook
from torch import nn
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import HOOKS

from mmsmlp.models.utils.cuda_graph import (GraphedInference,
                                            GraphedTraining, find_wrapper)
from mmsmlp.utils.checks import named_submodule


@HOOKS.register_module()
class CUDAGraphHook(Hook):
    """Run the training forward and backward of ``modules`` (default: the
    backbone) as CUDA graphs (:class:`~mmsmlp.models.utils.cuda_graph.
    GraphedTraining`).

    sMLPNet's eager training step is bound by the host issuing its kernels;
    replayed from a graph, it costs what its kernels cost
    (docs/benchmarks.md). By default the graph is captured at the first
    training iteration from that batch and replayed for every batch of the
    same shape: fixed-size batches (the ImageNet configs: 224x224 crops,
    ``drop_last=True``; UperNet's 512x512 crops) replay every iteration;
    other shapes run eagerly, with a warning saying so. ``training=dict(
    min_calls=..., max_graphs=...)`` keeps a graph for each batch shape
    seen ``min_calls`` times, up to ``max_graphs`` shapes (the Mask R-CNN
    configs: mmdet's batches take their images' shape, and a few shapes
    make most of COCO's batches); the graphs keep their activations'
    memory, in one pool (logged after each epoch, with the counts of
    replayed calls). The same values are computed as without it (tested on
    a GPU in ``tests/test_cuda_graph.py``).

    With ``inference=True``, validation and testing (eval mode, from
    ``before_val`` / ``before_test``: ``tools/test.py`` too) replay graphs
    of the module's forward for input shapes that repeat
    (:class:`~mmsmlp.models.utils.cuda_graph.GraphedInference`: mmseg's
    sliding windows, images of one size), released at the end of each
    validation or test (their memory back for training); otherwise they
    run it eagerly.

    It does nothing without CUDA, or with ``enabled=False``, and steps
    aside, with a log line, under ``--compile`` (``CompileForwardHook``,
    whose ``reduce-overhead`` mode makes its own graphs). Under DDP
    (``tools/dist_train.sh``) it captures with aliases of the parameters
    (``GraphedTraining(alias_parameters=True)``): DDP creates the
    parameters' gradient accumulators on the default stream when it is
    built, and the capture, on a side stream, cannot feed them; the
    gradients then go through autograd, for DDP's hooks. Under
    :class:`~mmsmlp.engine.model_wrappers.FlatReduceDDP`
    (``model_wrapper_cfg=dict(type='FlatReduceDDP')``), which reduces the
    module's gradients itself, the replay sets them directly, as on one
    GPU, into one buffer that it all-reduces. A module
    holding ``SyncBatchNorm`` trains eagerly (its all-reduces would be
    captured too: not tested).

    Args:
        modules (Sequence[str]): Names of the model's submodules to graph
            (``model.get_submodule`` names). Defaults to ``('backbone', )``.
        enabled (bool): Defaults to True.
        training (dict): ``GraphedTraining``'s ``min_calls``,
            ``max_graphs`` and ``direct_grads`` (False: the gradients go
            through autograd, a node per parameter). Defaults to one graph,
            captured at the first iteration, gradients set directly.
        inference (bool | dict): Graphs in validation and testing too;
            a dict gives ``GraphedInference``'s arguments (``min_calls``,
            ``max_graphs``). Defaults to False (the ImageNet configs'
            validation is paced by its data loader, not by the host).
    """

    priority = 'LOWEST'  # after CompileForwardHook's before_train

    def __init__(self,
                 modules: Sequence[str] = ('backbone', ),
                 enabled: bool = True,
                 training: Optional[dict] = None,
                 inference: Union[bool, dict] = False):
        if isinstance(modules, str):
            modules = (modules, )
        self.modules = tuple(modules)
        self.enabled = enabled
        training = dict(training or {})
        unknown = set(training) - {'min_calls', 'max_graphs', 'direct_grads'}
        if unknown:
            raise KeyError(f'CUDAGraphHook: training takes min_calls, '
                           f'max_graphs and direct_grads, got '
                           f'{sorted(unknown)}')
        self.training = training
        if not isinstance(inference, (bool, dict)):
            raise TypeError('CUDAGraphHook: inference must be a bool or a '
                            f'dict of GraphedInference arguments, got '
                            f'{inference!r}')
        self.inference = inference
        self._logged_inference = False

    def submodules(self, model) -> list:
        """The modules to graph; an error names a missing one."""
        return [
            named_submodule(model, name, 'CUDAGraphHook')
            for name in self.modules
        ]

    def _graphable(self, runner, training: bool):
        """The model's modules to graph, or None (with a log line saying
        why not)."""
        model = _inner_model(runner.model)
        if not self.enabled:
            return None
        modules = self.submodules(model)
        if getattr(model, '_forward_compiled', False):
            runner.logger.info('CUDAGraphHook: the forward is compiled '
                               '(--compile): no graphs of its own')
            return None
        synced = [
            name for name, module in zip(self.modules, modules)
            if any(isinstance(m, nn.SyncBatchNorm) for m in module.modules())
        ]
        if synced and training:
            runner.logger.info(f'CUDAGraphHook: {synced} hold SyncBatchNorm '
                               '(collectives in the step): eager training')
            return None
        device = next(model.parameters()).device
        if device.type != 'cuda':
            runner.logger.info(f'CUDAGraphHook: the model is on {device}, '
                               'not CUDA: it runs eagerly')
            return None
        return modules

    def before_train(self, runner) -> None:
        modules = self._graphable(runner, training=True)
        if modules is None:
            return
        wrapped = is_model_wrapper(runner.model)
        for module in modules:
            by_ddp = _reduced_by_ddp(runner.model, module)
            graphed = GraphedTraining.wrap(
                module,
                alias_parameters=by_ddp,
                one_grad_buffer=wrapped and not by_ddp,  # FlatReduceDDP's
                **self.training)
        runner.logger.info(
            f'CUDAGraphHook: {list(self.modules)} train through CUDA graphs '
            f'(a graph for each input shape seen {graphed.min_calls} times, '
            f'up to {graphed.max_graphs} shapes)')

    def _log_training(self, runner) -> None:
        model = _inner_model(runner.model)
        for name in self.modules:
            graphed = find_wrapper(GraphedTraining,
                                   model.get_submodule(name))
            if graphed is None:
                continue
            calls = graphed.replays + graphed.eager_calls
            runner.logger.info(
                f'CUDAGraphHook: {name}: {graphed.replays} of {calls} '
                f'training calls so far replayed from CUDA graphs '
                f'({len(graphed.graphs)} shapes captured, at most '
                f'{graphed.max_graphs}; their memory pool: '
                f'{graphed.pool_bytes() / 2**20:.0f} MB)')

    def after_train_epoch(self, runner) -> None:
        # (an iteration-based loop calls it once, at its end)
        self._log_training(runner)

    def _before_inference(self, runner) -> None:
        if self.inference is False:
            return
        # eval-mode BatchNorms (SyncBatchNorm too) use their running
        # statistics: no collectives in an inference forward
        modules = self._graphable(runner, training=False)
        if modules is None:
            return
        options = self.inference if isinstance(self.inference, dict) else {}
        for module in modules:
            graphed = GraphedInference.wrap(module, **options)
        if not self._logged_inference:
            self._logged_inference = True
            runner.logger.info(
                f'CUDAGraphHook: {list(self.modules)} evaluate through CUDA '
                f'graphs for input shapes seen {graphed.min_calls} times (up '
                f'to {graphed.max_graphs} shapes)')

    def _after_inference(self, runner) -> None:
        # the graphs' memory back for training: a validation captures anew
        model = _inner_model(runner.model)
        if not self.enabled or self.inference is False:
            return
        for name in self.modules:
            graphed = find_wrapper(GraphedInference,
                                   model.get_submodule(name))
            if graphed is not None:
                graphed.release()

    def before_val(self, runner) -> None:
        self._before_inference(runner)

    def after_val(self, runner) -> None:
        self._after_inference(runner)

    def before_test(self, runner) -> None:
        self._before_inference(runner)

    def after_test(self, runner) -> None:
        self._after_inference(runner)


def _reduced_by_ddp(model, module) -> bool:
    """Whether DDP's hooks reduce gradients of ``module``'s parameters
    (a model wrapper other than ``FlatReduceDDP`` reducing them all)."""
    if not is_model_wrapper(model):
        return False
    reduces = getattr(model, 'reduces', None)
    return reduces is None or not all(
        reduces(p) for p in module.parameters() if p.requires_grad)


def _inner_model(model):
    """The model the configs describe, inside DDP's wrapper and, under
    ``tools/test.py --tta``, inside the TTA model."""
    if is_model_wrapper(model):
        model = model.module
    if isinstance(model, BaseTTAModel):
        model = model.module
    return model

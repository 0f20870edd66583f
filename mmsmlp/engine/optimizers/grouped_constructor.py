# Copyright (c) mmsmlp contributors. All rights reserved.
"""An optimizer-wrapper constructor that keeps one parameter group per set of
hyper-parameters, instead of one per parameter tensor."""
from typing import Dict, List

import torch
import torch.nn as nn
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS


def merge_param_groups(groups: List[dict]) -> List[dict]:
    """Groups with equal options (every key but ``params``) merged into one,
    in order of first appearance; parameters keep their order."""
    merged: List[dict] = []
    for group in groups:
        options = {k: v for k, v in group.items() if k != 'params'}
        for target in merged:
            if {k: v for k, v in target.items() if k != 'params'} == options:
                target['params'].extend(group['params'])
                break
        else:
            merged.append({**options, 'params': list(group['params'])})
    return merged


# Options that choose how an optimizer computes, not what.
IMPLEMENTATION_OPTIONS = ('fused', 'foreach', 'capturable')


def keep_implementation(optimizer: torch.optim.Optimizer) -> None:
    """After ``optimizer.load_state_dict``: the configured implementation
    (``fused``, ``foreach``, ``capturable``), not the saved one.

    PyTorch's ``load_state_dict`` takes every group option from the saved
    state, so a run resumed from a checkpoint of the foreach AdamW would
    go on with it whatever the config says (and one of the fused AdamW,
    with it after ``fused=False``). These options change how the update is
    computed, not what (up to float rounding). The steps' counters move to
    where the implementation keeps them: the parameter's device for the
    fused and capturable ones, the CPU otherwise (as PyTorch puts them)."""
    options = {k: optimizer.defaults[k] for k in IMPLEMENTATION_OPTIONS
               if k in optimizer.defaults}
    on_device = set()
    for group in optimizer.param_groups:
        group.update(options)
        if group.get('fused') or group.get('capturable'):
            on_device.update(id(p) for p in group['params'])
    for param, state in optimizer.state.items():
        step = state.get('step')
        if isinstance(step, torch.Tensor):
            device = param.device if id(param) in on_device else 'cpu'
            dtype = step.dtype if step.is_floating_point() else torch.float32
            state['step'] = step.to(device, dtype)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class GroupedOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's ``DefaultOptimWrapperConstructor`` with the parameter groups
    that ``paramwise_cfg`` gives merged by their options.

    With a ``paramwise_cfg`` (e.g. ``norm_decay_mult=0, bias_decay_mult=0``
    of mmpretrain's Swin/DeiT schedules), mmengine makes one parameter group
    per parameter tensor (hundreds for sMLPNet). PyTorch's optimizers step
    each group on its own: the ``foreach`` AdamW then launches its dozen
    kernels once per tensor instead of once per group, a Python loop of a
    few hundred iterations per step, which bounds an eager training step on
    a fast GPU. Here the parameters with the same options (learning rate,
    weight decay, any custom key) share one group, so that AdamW steps,
    say, two groups. Every parameter gets the learning rate and weight
    decay it got from the default constructor, so the update is the same;
    learning-rate schedulers and ``auto_scale_lr`` act on the groups as
    before.

    Checkpoints written with it resume exactly, with the configured
    implementation (``fused``, ``foreach``: :func:`keep_implementation`).
    A checkpoint written with the default constructor (one group per
    parameter, and its schedulers' values per group) is refused with an
    error naming the option that resumes it
    (``optim_wrapper.constructor=DefaultOptimWrapperConstructor``).

    Use it with ``optim_wrapper = dict(constructor=
    'GroupedOptimWrapperConstructor', ...)``. Registered in mmengine's root
    registry: every scope finds it. Arguments are the default
    constructor's.
    """

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   is_dcn_module=None) -> None:
        if prefix:  # the default constructor's recursion into submodules
            return super().add_params(params, module, prefix, is_dcn_module)
        per_param: List[dict] = []
        super().add_params(per_param, module, prefix, is_dcn_module)
        params.extend(merge_param_groups(per_param))

    def __call__(self, model: nn.Module) -> OptimWrapper:
        optim_wrapper = super().__call__(model)
        # The registry builds the optimizer from a ConfigDict, which makes
        # each parameter group a ConfigDict too: a read of one of its
        # options then costs about 8 times a dict's (its lazy-object
        # check), and AdamW reads them about 1300 times a step for
        # sMLPNet-T (some per parameter tensor). Plain dicts, same contents.
        groups = optim_wrapper.optimizer.param_groups
        groups[:] = [dict(group) for group in groups]
        if self.paramwise_cfg:
            optim_wrapper.optimizer.register_load_state_dict_pre_hook(
                self._check_layout)
        optim_wrapper.optimizer.register_load_state_dict_post_hook(
            keep_implementation)
        return optim_wrapper

    @staticmethod
    def _check_layout(optimizer, state_dict: Dict) -> None:
        """An optimizer state saved with one group per parameter (by the
        default constructor) names the way to resume it."""
        saved = state_dict['param_groups']
        if len(saved) != len(optimizer.param_groups) and all(
                len(g['params']) == 1 for g in saved):
            raise ValueError(
                f'this optimizer state has {len(saved)} parameter groups of '
                'one parameter each (saved with mmengine\'s '
                'DefaultOptimWrapperConstructor), the optimizer '
                f'{len(optimizer.param_groups)} merged groups: resume it '
                "with --cfg-options optim_wrapper.constructor="
                "DefaultOptimWrapperConstructor (its learning-rate "
                'schedulers saved one value per group too)')

# Copyright (c) mmsmlp contributors. All rights reserved.
"""CompileForwardHook's activation_memory_budget: what AOTAutograd keeps
for the backward of sMLPNet's compiled training forward."""
import functools
import types

import pytest
import torch
import torch._functorch.config as functorch_config
from mmengine.logging import MMLogger
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func
from torch._functorch.partitioners import min_cut_rematerialization_partition

from mmsmlp.engine.hooks import CompileForwardHook
from mmsmlp.models import SMLPNet


def recording_backend(record: dict):
    """A torch.compile backend that partitions as inductor does and records
    the bytes of the activations the forward keeps for the backward, and
    the memory budget it was partitioned with; both graphs run uncompiled
    (ATen ops), so the values are eager PyTorch's."""

    def forward_compiler(gm, example_inputs):
        output, = [n for n in gm.graph.nodes if n.op == 'output']
        kept = [
            n.meta['val'] for n in output.args[0]
            if n.op != 'placeholder'  # parameters and the input
            and isinstance(n.meta.get('val'), torch.Tensor)
        ]
        record['kept'] = sum(t.numel() * t.element_size() for t in kept)
        record['budget'] = functorch_config.activation_memory_budget
        return make_boxed_func(gm)

    return aot_autograd(
        fw_compiler=forward_compiler,
        bw_compiler=lambda gm, example_inputs: make_boxed_func(gm),
        partition_fn=functools.partial(min_cut_rematerialization_partition,
                                       compiler='inductor'))


def compiled_step(budget):
    """A small sMLPNet's training forward compiled through the hook, and
    one step's gradients and record."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = SMLPNet(
        arch=dict(embed_dims=16, depths=[1, 1, 2, 1], mlp_ratio=3),
        img_size=64).train()
    record = {}
    hook = CompileForwardHook(
        activation_memory_budget=budget, backend=recording_backend(record))
    hook.before_train(
        types.SimpleNamespace(model=model,
                              logger=MMLogger.get_current_instance()))
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    sum(out.mean() for out in model(x)).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    return record, grads


def test_memory_budget_keeps_fewer_activations_same_gradients():
    default, default_grads = compiled_step(None)
    budgeted, budgeted_grads = compiled_step(0.99)
    assert default['budget'] == 1.0
    assert budgeted['budget'] == 0.99
    # outside the compiled forward's calls, PyTorch's setting stays
    assert functorch_config.activation_memory_budget == 1.0
    # the GELUs and other elementwise results are recomputed in backward
    assert budgeted['kept'] < 0.8 * default['kept']
    assert default_grads.keys() == budgeted_grads.keys()
    for name, grad in default_grads.items():
        torch.testing.assert_close(budgeted_grads[name], grad, msg=name)


@pytest.mark.parametrize('budget', [0, 1.5, -0.1])
def test_memory_budget_out_of_range(budget):
    with pytest.raises(ValueError, match='activation_memory_budget'):
        CompileForwardHook(activation_memory_budget=budget)

# Copyright (c) mmsmlp contributors. All rights reserved.
"""CompileForwardHook's activation_memory_budget: what AOTAutograd keeps
for the backward of sMLPNet's compiled training forward."""
import types

import pytest
import torch
import torch._functorch.config as functorch_config
from mmengine.logging import MMLogger

from mmsmlp.engine.hooks import CompileForwardHook
from mmsmlp.models import SMLPNet
from mmsmlp.models.utils.fast_paths import set_mode
from .conftest import import_tool

# partitions as inductor does, records what the forward keeps
saved_activations = import_tool('analysis_tools/saved_activations.py')
recording_backend = saved_activations.recording_backend


def small_smlpnet():
    torch.manual_seed(0)
    return SMLPNet(
        arch=dict(embed_dims=16, depths=[1, 1, 2, 1], mlp_ratio=3),
        img_size=64).train()


def compiled_step(budget):
    """A small sMLPNet's training forward compiled through the hook, and
    one step's gradients and record."""
    torch._dynamo.reset()
    model = small_smlpnet()
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


def test_saved_activations_tool_counts_what_autograd_keeps():
    """The tool's eager figure: the hand-written training nodes keep less
    than the plain formulas; its compiled figure: the budget keeps less."""
    model, x = small_smlpnet(), torch.randn(4, 3, 64, 64)
    y = torch.randint(0, 10, (4, ))
    with set_mode('plain'):
        plain = saved_activations.eager_saved(model, x)
    nodes = saved_activations.eager_saved(model, x)
    assert 0 < nodes < 0.9 * plain
    full = saved_activations.compiled_saved(model, x, y)
    budgeted = saved_activations.compiled_saved(model, x, y, budget=0.99)
    assert 0 < budgeted < 0.8 * full


def test_memory_budget_steps_through_inductor():
    """Two training steps of the hook's compiled forward (inductor, with
    the budget) give eager PyTorch's gradients and BatchNorm statistics."""
    torch._dynamo.reset()
    eager, compiled = small_smlpnet(), small_smlpnet()
    CompileForwardHook(activation_memory_budget=0.99).before_train(
        types.SimpleNamespace(model=compiled,
                              logger=MMLogger.get_current_instance()))
    for step in range(2):
        x = torch.randn(4, 3, 64, 64,
                        generator=torch.Generator().manual_seed(step))
        for model in (eager, compiled):
            sum(out.mean() for out in model(x)).backward()
    want, got = eager.state_dict(), compiled.state_dict()
    for name, tensor in want.items():
        torch.testing.assert_close(got[name], tensor, msg=name)
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)

# Copyright (c) mmsmlp contributors. All rights reserved.
"""The speed-oriented formulation equals the plain one, in training too."""
import contextlib
import copy
import os.path as osp
import runpy

import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch import nn

from mmsmlp.models import SMLPNet
from mmsmlp.models.utils.channel_mlp import ChannelMLP, LayerNormKeepDtype
from mmsmlp.models.utils.fast_paths import graph_capture, set_mode
from mmsmlp.models.utils.sums import sum_dtype, sum_rows
from mmsmlp.testing import OfficialSMLPNet
from .conftest import REPO_ROOT, assert_same_gradients, import_tool
from .test_converter import randomize

converter = runpy.run_path(
    osp.join(REPO_ROOT, 'tools', 'model_converters', 'spach2mmsmlp.py'))


@pytest.mark.parametrize('capturing', [False, True])
def test_channel_mlp_recompute_matches_autograd(capturing):
    torch.manual_seed(0)
    mlp = ChannelMLP(8, 24).train()
    x = torch.randn(2, 5, 7, 8, requires_grad=True)
    with graph_capture() if capturing else contextlib.nullcontext():
        out = mlp(x)
    assert out.grad_fn.__class__.__name__ == '_ChannelMLPFunctionBackward'
    plain = mlp.fc2(F.gelu(mlp.fc1(x)))
    torch.testing.assert_close(out, plain)
    assert_same_gradients(out, plain, [x, *mlp.parameters()])


def test_channel_mlp_under_autocast():
    mlp = ChannelMLP(8, 24).train()
    x = torch.randn(4, 8, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = mlp(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert mlp.fc2.weight.grad.dtype == torch.float32
    assert mlp.fc2.bias.grad.dtype == torch.float32
    torch.testing.assert_close(mlp.fc2.bias.grad, torch.full((8, ), 4.))


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16,
                                   torch.float32, torch.float64])
def test_sum_dtype_is_the_promotion_with_fp32(dtype):
    assert sum_dtype(dtype) == torch.promote_types(dtype, torch.float32)


@pytest.mark.parametrize('device', [
    'cpu',
    pytest.param('cuda', marks=pytest.mark.skipif(
        not torch.cuda.is_available(), reason='the product form needs CUDA'))
])
@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16,
                                   torch.float32])
def test_sum_rows_is_the_fp32_column_sum(device, dtype):
    """The backward passes' row sums (a product with ones for bf16/fp16 on
    CUDA): fp32 results, within fp32 rounding of the exact sum; a rounding
    to the input's dtype (as ``x.sum(0)`` gives) would be off by ~1e-2."""
    torch.manual_seed(0)
    x = torch.randn(3001, 37, device=device).to(dtype)
    got = sum_rows(x)
    want = x.double().sum(0)
    assert got.dtype == torch.float32 and got.shape == (37, )
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-3)
    assert (x.sum(0).double() - want).abs().max() > 1e-2 or \
        dtype == torch.float32


def test_layer_norm_keeps_dtype():
    norm = LayerNormKeepDtype(8)
    torch.nn.init.normal_(norm.weight)
    x = torch.randn(3, 8)
    torch.testing.assert_close(
        norm(x), F.layer_norm(x, (8, ), norm.weight, norm.bias))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = norm(x.bfloat16())
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(
        out.float(), F.layer_norm(x, (8, ), norm.weight, norm.bias),
        atol=0.05, rtol=0.02)
    out.float().sum().backward()  # fp32 parameters get fp32 gradients
    assert norm.weight.grad.dtype == norm.bias.grad.dtype == torch.float32


def autograd_nodes(outputs):
    """The type names of the autograd graph's nodes behind ``outputs``, and
    whether each is a custom (``torch.autograd.Function``) node."""
    names, seen, stack = {}, set(), [o.grad_fn for o in outputs]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names[type(node).__name__] = isinstance(
            node, torch.autograd.function.BackwardCFunction)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


def count_norm_calls(model):
    """How often each kind of the blocks' BatchNorms (``norm1``: before the
    depth-wise conv, ``norm2``: after it) is called as a module."""
    calls = {'norm1': 0, 'norm2': 0}
    for name, module in model.named_modules():
        kind = name.rpartition('.')[2]
        if kind in calls and '.' in name:  # not the stage outputs' norms

            def hook(*_, kind=kind):
                calls[kind] += 1

            module.register_forward_hook(hook)
    return calls


def assert_close_to_scale(got, want, rtol, name=''):
    """``got`` equals ``want`` within ``rtol`` of ``want``'s largest
    magnitude (elementwise relative tolerances fail on the small entries of
    sums whose terms cancel), or of 1 (a gradient that is zero in exact
    arithmetic, as a bias's before a train-mode BatchNorm, is rounding
    noise)."""
    scale = max(want.abs().max().item(), 1.) \
        if want.is_floating_point() else 0.
    torch.testing.assert_close(
        got, want, rtol=rtol, atol=rtol * scale,
        msg=lambda m: f'{name}: {m}')


# fp64: the formulas are the same (differences at fp64 rounding); fp32: the
# fast forms lose no precision (within ~100 fp32 roundings of the largest
# value; half precision anywhere would be off by 1e-3).
@pytest.mark.parametrize('dtype,rtol', [(torch.float64, 1e-12),
                                        (torch.float32, 1e-5)])
@pytest.mark.parametrize('training', [True, False])
def test_backbone_plain_mode_equals_default_mode(training, dtype, rtol):
    """The whole backbone in ``plain`` mode (the plain formulas) and in the
    default mode (its fast forms): the same outputs, the same gradients for
    the input and every parameter, and the same running statistics; and each
    mode takes its own ops. Train mode: the default takes the hand-written
    autograd nodes, plain none. Eval mode (with autograd, as a frozen-norm
    fine-tuning): the default runs the first BatchNorm as the frozen
    BatchNorm + GELU node and the depth-wise conv with the second as the
    frozen conv + BatchNorm + GELU node; plain calls both."""
    torch.manual_seed(0)
    model = randomize(SMLPNet(arch=dict(embed_dims=8, depths=[1, 2, 1, 1],
                                        mlp_ratio=3), img_size=64,
                              out_indices=(0, 1, 2, 3)), seed=1)
    x = torch.randn(2, 3, 64, 64, dtype=dtype)
    grad_outputs = None
    results = {}
    for mode in ('plain', 'default'):
        m = copy.deepcopy(model).to(dtype).train(training)
        calls = count_norm_calls(m)
        inputs = [x.clone().requires_grad_(), *m.parameters()]
        with set_mode(mode):
            outs = m(inputs[0])
        if grad_outputs is None:
            grad_outputs = [torch.randn_like(o) for o in outs]
        # Backward outside the block: the recorded nodes decide it.
        grads = torch.autograd.grad(outs, inputs, grad_outputs)
        results[mode] = (outs, grads, m.state_dict(), autograd_nodes(outs),
                         calls)
    plain, fast = results['plain'], results['default']
    for i, (got, want) in enumerate(zip(fast[0], plain[0])):
        assert_close_to_scale(got, want, rtol, f'output {i}')
    names = ['input'] + [n for n, _ in model.named_parameters()]
    assert len(fast[1]) == len(names) == len(plain[1])
    for name, got, want in zip(names, fast[1], plain[1]):
        assert_close_to_scale(got, want, rtol, f'gradient of {name}')
    for name, want in plain[2].items():  # running statistics too
        assert_close_to_scale(fast[2][name], want, rtol, name)

    plain_custom = {n for n, custom in plain[3].items() if custom}
    fast_custom = {n for n, custom in fast[3].items() if custom}
    assert plain_custom == set()
    blocks = sum(model.depths)
    assert plain[4] == {'norm1': blocks, 'norm2': blocks}
    if training:
        assert fast_custom == {'_SparseMLPFunctionBackward',
                               '_ChannelMLPFunctionBackward',
                               '_BatchNormGELUBackward'}
        # Every block's BatchNorms run inside the autograd node.
        assert fast[4] == {'norm1': 0, 'norm2': 0}
        # The plain formulas' own ops are there instead.
        assert {'BmmBackward0', 'GeluBackward0',
                'NativeBatchNormBackward0'} <= set(plain[3])
    else:
        # the token mixer's and channel MLP's nodes in training only; the
        # frozen BatchNorm + GELU's node, and the conv's with norm2
        assert fast_custom == {'_FrozenBatchNormGELUBackward',
                               '_FrozenConvBatchNormGELUBackward'}
        assert fast[4] == {'norm1': 0, 'norm2': 0}


def test_training_step_matches_official_formulation():
    """Train mode (batch statistics), loss and every gradient."""
    official = randomize(
        OfficialSMLPNet(dim=8, depths=[1, 2, 1, 1], num_classes=5,
                        image_size=64), seed=3).train()
    state_dict = converter['convert'](official.state_dict())
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(
                type='SMLPNet',
                arch=dict(embed_dims=8, depths=[1, 2, 1, 1], mlp_ratio=3),
                img_size=64),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=5,
                      in_channels=64))).train()
    model.load_state_dict(state_dict)
    x = torch.randn(4, 3, 64, 64)
    y = torch.tensor([0, 1, 2, 3])
    loss_official = F.cross_entropy(official(x), y)
    loss = F.cross_entropy(model(x, mode='tensor'), y)
    torch.testing.assert_close(loss, loss_official)
    loss_official.backward()
    loss.backward()
    ours = dict(model.named_parameters())
    official_params = dict(official.named_parameters())
    mapped = converter['convert'](
        {k: p.grad for k, p in official_params.items()})
    assert len(mapped) == len(ours)
    for name, grad in mapped.items():
        torch.testing.assert_close(
            ours[name].grad, grad.view_as(ours[name]), atol=1e-5, rtol=1e-4,
            msg=name)
    # BatchNorm running statistics move as the official modules move them.
    ours_state = model.state_dict()
    buffers = {k: v for k, v in converter['convert'](
        official.state_dict()).items() if 'running' in k or 'batches' in k}
    assert len(buffers) == 3 * 2 * (1 + 2 + 1 + 1) + 3  # 2 BNs/block + norm3
    for name, value in buffers.items():
        torch.testing.assert_close(ours_state[name], value, msg=name)


@pytest.mark.parametrize('size', [(64, 64), (96, 80)])
@pytest.mark.parametrize('training', [True, False])
def test_backbone_compiles_as_one_graph(training, size):
    """torch.compile sees the whole backbone without a graph break (in
    training: batch statistics; in eval: folded BatchNorms), at the weights'
    size and at one the stages resample for, and gives the eager outputs
    and gradients."""
    torch.manual_seed(0)
    model = SMLPNet(arch=dict(embed_dims=8, depths=[1, 2, 1, 1],
                              mlp_ratio=3), img_size=64,
                    out_indices=(0, 1, 2, 3), drop_path_rate=0.)
    model.train(training)
    compiled = torch.compile(model, fullgraph=True, backend='aot_eager')
    x = torch.randn(2, 3, *size, requires_grad=True)
    results = []
    for fn in (compiled, model):
        outs = fn(x)
        results.append(
            (outs, torch.autograd.grad(sum(o.sum() for o in outs), x)[0]))
    (got, got_grad), (want, want_grad) = results
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w)
    torch.testing.assert_close(got_grad, want_grad)


def test_two_forwards_one_backward():
    """A backbone applied twice (e.g. to two views) before one backward,
    its running statistics updated in place in between, gives the sum of
    the two forward-backward passes' gradients."""
    torch.manual_seed(0)
    model = SMLPNet(arch=dict(embed_dims=8, depths=[1, 1, 1, 1],
                              mlp_ratio=3), img_size=32).train()
    a, b = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 32, 32)
    params = list(model.parameters())

    def loss_a():
        return model(a)[0].square().sum()

    def loss_b():
        return model(b)[0].sum()

    joint = torch.autograd.grad(loss_a() + loss_b(), params)
    separate = [ga + gb for ga, gb in zip(
        torch.autograd.grad(loss_a(), params),
        torch.autograd.grad(loss_b(), params))]
    for j, s in zip(joint, separate):
        torch.testing.assert_close(j, s)


def test_op_count_tool_counts_one_step():
    """tools/analysis_tools/op_count.py counts the ATen ops of one step:
    a pooled linear classifier's forward has one matmul (addmm) and its
    backward one (mm, the weight gradient: the input needs none); the
    warm-up step is not counted."""
    op_count = import_tool('analysis_tools/op_count.py')
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(3, 1000))
    fwd, bwd = op_count.count_step(model, size=8, batch=2)
    assert fwd['addmm'] == 1 and fwd['mean'] == 1
    assert bwd['mm'] == 1 and 'addmm' not in bwd
    assert fwd == op_count.count_step(model, size=8, batch=2)[0]


def test_op_count_tool_counts_one_inference_forward():
    """``op_count.py --infer`` counts one forward without autograd, at the
    given height and width: a pooled linear classifier's is the pooling
    and one addmm, whatever the size; nothing of a backward."""
    op_count = import_tool('analysis_tools/op_count.py')
    model = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(3, 10)).eval()
    counts = op_count.count_inference(model, (8, 12), batch=1)
    assert counts['addmm'] == 1 and counts['mean'] == 1
    assert not any('backward' in op for op in counts)
    assert counts == op_count.count_inference(model, (16, 5), batch=2)


def test_op_count_tool_counts_a_backbone_step_at_any_size():
    """``op_count.py --backbone-of``: a backbone's step (a tuple of
    outputs, the sum of their means as the loss) at a height and width;
    the frozen BatchNorms' nodes are counted as they run, and a stage
    resamples its blocks' maps together."""
    op_count = import_tool('analysis_tools/op_count.py')
    model = SMLPNet(arch=dict(embed_dims=8, depths=[2, 1, 1, 1],
                              mlp_ratio=3), img_size=64,
                    out_indices=(0, 1, 2, 3), norm_eval=True).train()
    fwd, bwd = op_count.count_step(model, size=(64, 64), batch=2)
    assert fwd['mean'] == 4  # one per output
    assert fwd['upsample_bilinear2d'] == 0  # the maps' own size
    # each block's two frozen-norm nodes (norm1; the conv with norm2) and
    # the 4 output norms
    assert bwd['native_batch_norm_backward'] == 2 * 5 + 4
    fwd, _ = op_count.count_step(model, size=(64, 96), batch=2)
    assert fwd['upsample_bilinear2d'] == 4  # each stage's width maps
    fwd, _ = op_count.count_step(model, size=(96, 128), batch=2)
    assert fwd['upsample_bilinear2d'] == 8  # and its height maps

# Copyright (c) mmsmlp contributors. All rights reserved.
import contextlib
import logging

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger

from mmsmlp.models import SMLPNet, SparseMLP, resample_axial_mixing
from mmsmlp.models.utils.fast_paths import graph_capture
from .conftest import assert_same_gradients


def reference_smlp(module, x):
    """The sMLP written out with explicit loops over positions (B,H,W,C)."""
    B, H, W, C = x.shape
    wh, bh = resample_axial_mixing(module.mix_h.weight, module.mix_h.bias, H)
    ww, bw = resample_axial_mixing(module.mix_w.weight, module.mix_w.bias, W)
    x_h = torch.stack([
        sum(wh[i, j] * x[:, j] for j in range(H)) + bh[i] for i in range(H)
    ], 1)
    x_w = torch.stack([
        sum(ww[i, j] * x[:, :, j] for j in range(W)) + bw[i]
        for i in range(W)
    ], 2)
    return torch.cat([x, x_w, x_h], -1) @ module.fuse.weight.t()


@pytest.mark.parametrize('size', [(7, 7), (5, 9), (12, 3)])
def test_matches_explicit_formula(size):
    torch.manual_seed(0)
    module = SparseMLP(channels=6, resolution=(7, 7))
    x = torch.randn(2, *size, 6)
    torch.testing.assert_close(module(x), reference_smlp(module, x))


def test_axes_are_not_swapped():
    module = SparseMLP(channels=1, resolution=(4, 4))
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()
        module.mix_h.weight[0, 3] = 1.  # row 0 takes row 3 (height axis)
        module.fuse.weight[0, 2] = 1.  # keep only the height-mixed copy
    x = torch.arange(16.).view(1, 4, 4, 1)
    out = module(x)[0, :, :, 0]
    assert torch.equal(out[0], x[0, 3, :, 0])
    assert torch.equal(out[1:], torch.zeros(3, 4))


def test_resample_identity_at_trained_size():
    w, b = torch.randn(7, 7), torch.randn(7)
    w2, b2 = resample_axial_mixing(w, b, 7)
    assert w2 is w and b2 is b


def test_resample_keeps_constant_response():
    # A constant kernel (every output averages its inputs) stays an average.
    w, b = torch.full((8, 8), 1 / 8), torch.full((8, ), 0.5)
    for size in (4, 13, 32):
        w2, b2 = resample_axial_mixing(w, b, size)
        assert w2.shape == (size, size) and b2.shape == (size, )
        torch.testing.assert_close(w2 @ torch.ones(size), torch.ones(size))
        torch.testing.assert_close(b2, torch.full((size, ), 0.5))


def test_gradients_reach_stored_weights_at_other_sizes():
    module = SparseMLP(channels=4, resolution=(7, 7))
    module(torch.randn(2, 11, 5, 4)).square().sum().backward()
    for p in module.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


def resampled_alone(weight, bias, size):
    """One map resampled by itself, written out (bilinear, pixel-centre
    aligned, scaled by ``N / size``)."""
    n = weight.shape[-1]
    return (F.interpolate(weight[None, None], size=(size, size),
                          mode='bilinear', align_corners=False)[0, 0] *
            (n / size),
            F.interpolate(bias[None, None], size=size, mode='linear',
                          align_corners=False)[0, 0])


def test_stage_resamples_its_blocks_together():
    """A stage resamples its blocks' maps in one interpolation per axis:
    the values and gradients of resampling each block's own."""
    torch.manual_seed(0)
    model = SMLPNet(
        arch=dict(embed_dims=8, depths=[3, 1, 1, 1], mlp_ratio=2),
        img_size=32, drop_path_rate=0.).train()
    stage = model.stages[0]
    smlps = [block.smlp for block in stage]
    for smlp in smlps:  # blocks differ from each other
        smlp.mix_h.weight.data.normal_()
        smlp.mix_w.bias.data.normal_()
    maps = SparseMLP.resample_together(smlps, 11, 5)
    singles = [(*resampled_alone(m.mix_h.weight, m.mix_h.bias, 11),
                *resampled_alone(m.mix_w.weight, m.mix_w.bias, 5))
               for m in smlps]
    params = [p for m in smlps
              for p in (*m.mix_h.parameters(), *m.mix_w.parameters())]
    for together, single in zip(maps, singles):
        for got, want in zip(together, single):
            torch.testing.assert_close(got, want)
    assert_same_gradients(torch.cat([t.flatten() for m in maps for t in m]),
                          torch.cat([t.flatten() for m in singles
                                     for t in m]), params)
    # at the trained size, the stored maps themselves
    for got, smlp in zip(SparseMLP.resample_together(smlps, 8, 8), smlps):
        assert got[0] is smlp.mix_h.weight and got[3] is smlp.mix_w.bias
    # the stage's output: each block with its own resampled maps
    x = torch.randn(2, 11, 5, 8)
    want = x
    for block in stage:
        want = block(want)
    torch.testing.assert_close(stage(x), want)


@pytest.mark.parametrize('size', [(224, 224), (256, 320), (512, 512),
                                  (800, 1216), (97, 131), (33, 250)])
def test_backbone_any_input_size(size):
    model = SMLPNet(
        arch=dict(embed_dims=8, depths=[1, 1, 1, 1], mlp_ratio=2),
        out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    for i, out in enumerate(outs):
        stride = 4 * 2**i
        assert out.shape[-2:] == (-(-size[0] // stride),
                                  -(-size[1] // stride))
        assert torch.isfinite(out).all()


def test_load_time_resampling_logs_and_matches():
    arch = dict(embed_dims=8, depths=[1, 1, 1, 1], mlp_ratio=2)
    at224 = SMLPNet(arch=arch, img_size=224).eval()
    at320 = SMLPNet(arch=arch, img_size=(320, 256)).eval()
    logger = MMLogger.get_instance('test_load_time_resampling')
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    at320.load_state_dict(at224.state_dict())
    messages = [r.getMessage() for r in records]
    assert ('Resample stages.0.0.smlp.mix_h.weight and '
            'stages.0.0.smlp.mix_h.bias from 56 to 80 positions') in messages
    assert ('Resample stages.3.0.smlp.mix_w.weight and '
            'stages.3.0.smlp.mix_w.bias from 7 to 8 positions') in messages
    smlp = at320.stages[0][0].smlp
    assert smlp.mix_h.weight.shape == (80, 80)
    assert smlp.mix_w.weight.shape == (64, 64)
    # Loading resampled weights equals resampling them on the fly.
    x = torch.randn(1, 3, 320, 256)
    with torch.no_grad():
        torch.testing.assert_close(at320(x)[0], at224(x)[0])


@pytest.mark.parametrize('capturing', [False, True])
@pytest.mark.parametrize('size', [(7, 7), (5, 9)])
def test_backward_matches_explicit_formula(size, capturing):
    """The hand-written training node, eagerly and as a CUDA graph capture
    runs it (its sums of the weight gradients; the flag needs no GPU)."""
    torch.manual_seed(0)
    module = SparseMLP(channels=6, resolution=(7, 7)).double()
    for p in module.parameters():
        torch.nn.init.normal_(p)
    x = torch.randn(2, *size, 6, dtype=torch.float64, requires_grad=True)
    with graph_capture() if capturing else contextlib.nullcontext():
        out = module(x)
    assert type(out.grad_fn).__name__ == '_SparseMLPFunctionBackward'
    assert_same_gradients(out, reference_smlp(module, x),
                          [x, *module.parameters()])


def test_autograd_function_under_autocast_and_compile():
    module = SparseMLP(channels=4, resolution=(5, 5))
    x = torch.randn(2, 5, 5, 4, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = module(x)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert x.grad.dtype == torch.float32
    assert all(p.grad.dtype == torch.float32 for p in module.parameters())
    compiled = torch.compile(module, fullgraph=True, backend='aot_eager')
    torch.testing.assert_close(compiled(x), module(x))


def test_compiled_fuse_sums_products_without_addmm():
    """Under torch.compile the fuse is three matmuls summed out of place
    (an addmm there copies its input first): the graph compiled holds no
    addmm, and values and gradients are the formula's."""
    torch.manual_seed(0)
    module = SparseMLP(channels=6, resolution=(7, 7))
    for p in module.parameters():
        torch.nn.init.normal_(p)
    ops = []

    def backend(gm, example_inputs):  # records the graph, runs it eagerly
        ops.extend(str(node.target) for node in gm.graph.nodes
                   if node.op in ('call_function', 'call_method'))
        return gm.forward

    x = torch.randn(2, 7, 7, 6, requires_grad=True)
    out = torch.compile(module, fullgraph=True, backend=backend)(x)
    assert not any('addmm' in op for op in ops), ops
    assert sum('built-in method mm' in op for op in ops) == 3, ops
    assert_same_gradients(out, reference_smlp(module, x),
                          [x, *module.parameters()])


def test_flop_counter():
    from mmengine.analysis import FlopAnalyzer
    module = SparseMLP(channels=4, resolution=(5, 6)).eval()
    flops = FlopAnalyzer(module, torch.randn(2, 5, 6, 4))
    assert flops.total() == 2 * 5 * 6 * 4 * (5 + 6 + 3 * 4)

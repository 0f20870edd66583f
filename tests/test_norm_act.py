# Copyright (c) mmsmlp contributors. All rights reserved.
"""The token mixer's BatchNorm fast paths equal the plain modules.

The fast paths take channels-last ``(B, H, W, C)`` tensors; the modules
they are checked against take ``(B, C, H, W)``."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmsmlp.models.utils.fast_paths import set_mode
from mmsmlp.models.utils.norm_act import batch_norm_gelu, conv_batch_norm_gelu
from .conftest import assert_same_gradients


def nhwc(x):
    return x.permute(0, 2, 3, 1)


def node_of(out):
    """The autograd node under the output's view."""
    return type(out.grad_fn.next_functions[0][0]).__name__


def randomized_bn(channels, seed=0):
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.weight.normal_()
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.)
    return bn


def assert_as_close_as_module(names, got, module, exact, dtype):
    """Each of ``got`` (the fast path's outputs and gradients) at most
    twice as far from ``exact`` (the modules in fp64) as ``module`` (the
    modules in ``dtype``), and within 2e-2 (fp16) or 1e-4 of its scale."""
    for name, g, m, e in zip(names, got, module, exact):
        error = (g.double() - e).abs().max().item()
        module_error = (m.double() - e).abs().max().item()
        scale = e.abs().max().item()
        assert error <= 2 * module_error + 1e-5 * scale, (
            name, error, module_error)
        assert error <= (2e-2 if dtype == torch.float16 else 1e-4) * scale, (
            name, error, scale)


@pytest.mark.parametrize('contiguous', [False, True])
def test_batch_norm_gelu_matches_modules_in_training(contiguous):
    bn, plain = randomized_bn(5), randomized_bn(5)
    x = torch.randn(4, 5, 6, 7)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    # A permuted view (strided) and a contiguous channels-last tensor.
    inp = nhwc(x1).contiguous() if contiguous else nhwc(x1)
    out, want = batch_norm_gelu(bn, inp), nhwc(F.gelu(plain(x2)))
    torch.testing.assert_close(out, want)
    assert_same_gradients(out, want, [x1, bn.weight, bn.bias],
                          [x2, plain.weight, plain.bias])
    # Running statistics move as nn.BatchNorm2d moves them.
    for name, buffer in plain.named_buffers():
        torch.testing.assert_close(getattr(bn, name), buffer, msg=name)


def test_batch_norm_gelu_with_other_norms():
    """A norm that is not a BatchNorm sees the (B, C, H, W) layout."""
    gn = nn.GroupNorm(2, 4)
    x = torch.randn(2, 4, 3, 5)
    torch.testing.assert_close(
        batch_norm_gelu(gn, nhwc(x)), nhwc(F.gelu(gn(x))))


def test_batch_norm_gelu_in_eval_and_without_grad():
    bn = randomized_bn(3)
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(
            batch_norm_gelu(bn, nhwc(x)), nhwc(F.gelu(bn(x))))
    bn.eval()
    torch.testing.assert_close(
        batch_norm_gelu(bn, nhwc(x)), nhwc(F.gelu(bn(x))))


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_frozen_batch_norm_gelu_trains_like_the_module(dtype):
    """norm_eval: a BatchNorm in eval mode inside a model that trains runs
    the frozen-statistics node (off cuDNN, whose inference kernel is slow
    on this view on a GPU); outputs and the gradients of the input and the
    affine terms equal the module's, and the statistics stay put."""
    bn, plain = (randomized_bn(5).to(dtype).eval() for _ in range(2))
    x = torch.randn(3, 5, 4, 6, dtype=dtype)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, want = batch_norm_gelu(bn, nhwc(x1)), nhwc(F.gelu(plain(x2)))
    assert node_of(out) == '_FrozenBatchNormGELUBackward'
    torch.testing.assert_close(out, want)
    assert_same_gradients(out, want, [x1, bn.weight, bn.bias],
                          [x2, plain.weight, plain.bias])
    for name, buffer in plain.named_buffers():
        assert torch.equal(getattr(bn, name), buffer), name
    # frozen affine terms too (frozen stages): only the input's gradient
    bn.requires_grad_(False)
    plain.requires_grad_(False)
    out, want = batch_norm_gelu(bn, nhwc(x1)), nhwc(F.gelu(plain(x2)))
    assert_same_gradients(out, want, [x1], [x2])
    with set_mode('plain'):  # the reference: the module itself
        assert node_of(batch_norm_gelu(bn, nhwc(x1))) == 'GeluBackward0'


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
def test_frozen_batch_norm_gelu_on_cuda(dtype):
    """On CUDA (PyTorch's native kernels, whose backward wants the saved
    statistics even in eval mode), at Mask R-CNN's stage-0 width: outputs
    and the gradients of the input and the affine terms, against the module
    in fp64, at least as close as the module itself (cuDNN's kernels) in
    ``dtype``. The affine terms' gradients sum 16800 positions a channel,
    which fp16 rounds differently in each kernel: an element-wise
    tolerance does not fit them, the module's own error does."""
    bn, plain = (randomized_bn(80).cuda().eval() for _ in range(2))
    exact = randomized_bn(80).cuda().double().eval()
    x = torch.randn(2, 80, 50, 84, device='cuda').to(dtype)
    x1, x2, x3 = (x.clone().double() if i == 2 else x.clone()
                  for i in range(3))
    for t in (x1, x2, x3):
        t.requires_grad_()
    # the channels-last activation a block holds
    out = batch_norm_gelu(bn, nhwc(x1).contiguous())
    assert node_of(out) == '_FrozenBatchNormGELUBackward'
    want = nhwc(F.gelu(plain(x2)))
    ref = nhwc(F.gelu(exact(x3)))
    grad = torch.randn_like(ref)
    got = (out, *torch.autograd.grad(out, [x1, bn.weight, bn.bias],
                                     grad.to(out.dtype)))
    module = (want, *torch.autograd.grad(
        want, [x2, plain.weight, plain.bias], grad.to(want.dtype)))
    exact_ = (ref, *torch.autograd.grad(
        ref, [x3, exact.weight, exact.bias], grad))
    assert_as_close_as_module(
        ('output', 'input grad', 'weight grad', 'bias grad'), got, module,
        exact_, dtype)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
def test_frozen_conv_batch_norm_gelu_on_cuda(dtype):
    """The frozen conv node (:class:`_FrozenConvBatchNormGELU`) on CUDA as
    Mask R-CNN trains it (autocast in ``dtype``, stage 0's width): outputs
    and the gradients of the input, the conv weight and the affine terms,
    against the modules in fp64, at least as close as the modules under
    the same autocast (see ``test_frozen_batch_norm_gelu_on_cuda``)."""
    bn, plain = (randomized_bn(80).cuda().eval() for _ in range(2))
    exact = randomized_bn(80).cuda().double().eval()
    torch.manual_seed(1)
    conv = nn.Conv2d(80, 80, 3, padding=1, groups=80, bias=False).cuda()
    conv_plain = nn.Conv2d(80, 80, 3, padding=1, groups=80,
                           bias=False).cuda()
    conv_plain.load_state_dict(conv.state_dict())
    conv_exact = copy.deepcopy(conv_plain).double()
    x = torch.randn(2, 80, 50, 84, device='cuda')
    x1, x2, x3 = x.clone(), x.clone(), x.double()
    for t in (x1, x2, x3):
        t.requires_grad_()
    grad = torch.randn(2, 50, 84, 80, device='cuda', dtype=torch.float64)
    with torch.autocast('cuda', dtype=dtype,
                        enabled=dtype != torch.float32):
        # the channels-last activation a block holds
        out = conv_batch_norm_gelu(conv, bn, nhwc(x1).contiguous())
        want = nhwc(F.gelu(plain(conv_plain(x2))))
    assert node_of(out) == '_FrozenConvBatchNormGELUBackward'
    ref = nhwc(F.gelu(exact(conv_exact(x3))))
    got = (out, *torch.autograd.grad(
        out, [x1, conv.weight, bn.weight, bn.bias], grad.to(out.dtype)))
    module = (want, *torch.autograd.grad(
        want, [x2, conv_plain.weight, plain.weight, plain.bias],
        grad.to(want.dtype)))
    exact_ = (ref, *torch.autograd.grad(
        ref, [x3, conv_exact.weight, exact.weight, exact.bias], grad))
    assert_as_close_as_module(
        ('output', 'input grad', 'conv grad', 'weight grad', 'bias grad'),
        got, module, exact_, dtype)


def test_folded_conv_batch_norm_in_eval():
    """Without autograd (inference), the norm folds into the conv."""
    bn = randomized_bn(6).eval()
    conv = nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False)
    x = torch.randn(2, 6, 9, 5)
    with torch.no_grad():
        torch.testing.assert_close(
            conv_batch_norm_gelu(conv, bn, nhwc(x)),
            nhwc(F.gelu(bn(conv(x)))))


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('frozen_conv', [False, True])
def test_frozen_conv_batch_norm_trains_like_the_modules(dtype, frozen_conv):
    """norm_eval: statistics frozen, conv weight and norm affine learn,
    through one autograd node (:class:`_FrozenConvBatchNormGELU`), as
    through the modules. A frozen conv (frozen stages) gets no
    gradient, the input still does."""
    bn = randomized_bn(6).to(dtype).eval()
    conv = nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False).to(dtype)
    conv.requires_grad_(not frozen_conv)
    x = torch.randn(2, 6, 9, 5, dtype=dtype, requires_grad=True)
    params = [x, bn.weight, bn.bias] + ([] if frozen_conv else [conv.weight])
    out = conv_batch_norm_gelu(conv, bn, nhwc(x))
    assert type(out.grad_fn.next_functions[0][0]).__name__ == (
        '_FrozenConvBatchNormGELUBackward')
    want = nhwc(F.gelu(bn(conv(x))))
    torch.testing.assert_close(out, want)
    assert_same_gradients(out, want, params)
    assert torch.equal(bn.running_mean, randomized_bn(6).running_mean.to(
        dtype))


def test_conv_batch_norm_in_training_uses_batch_statistics():
    bn, plain = randomized_bn(4), randomized_bn(4)
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
    x = torch.randn(3, 4, 5, 5)
    torch.testing.assert_close(
        conv_batch_norm_gelu(conv, bn, nhwc(x)),
        nhwc(F.gelu(plain(conv(x)))))
    torch.testing.assert_close(bn.running_mean, plain.running_mean)

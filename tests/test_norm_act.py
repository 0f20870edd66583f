# Copyright (c) mmsmlp contributors. All rights reserved.
"""The token mixer's BatchNorm fast paths equal the plain modules.

The fast paths take channels-last ``(B, H, W, C)`` tensors; the modules
they are checked against take ``(B, C, H, W)``."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmsmlp.models.utils.norm_act import batch_norm_gelu, conv_batch_norm_gelu
from .conftest import assert_same_gradients


def nhwc(x):
    return x.permute(0, 2, 3, 1)


def randomized_bn(channels, seed=0):
    torch.manual_seed(seed)
    bn = nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.weight.normal_()
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.)
    return bn


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


def test_folded_conv_batch_norm_in_eval():
    bn = randomized_bn(6).eval()
    conv = nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False)
    x = torch.randn(2, 6, 9, 5)
    torch.testing.assert_close(
        conv_batch_norm_gelu(conv, bn, nhwc(x)), nhwc(F.gelu(bn(conv(x)))))


def test_folded_conv_batch_norm_trains_frozen_norm():
    """norm_eval: statistics frozen, conv weight and norm affine learn."""
    bn = randomized_bn(6).eval()
    conv = nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False)
    x = torch.randn(2, 6, 9, 5)
    params = [conv.weight, bn.weight, bn.bias]
    assert_same_gradients(conv_batch_norm_gelu(conv, bn, nhwc(x)),
                          nhwc(F.gelu(bn(conv(x)))), params)


def test_conv_batch_norm_in_training_uses_batch_statistics():
    bn, plain = randomized_bn(4), randomized_bn(4)
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False)
    x = torch.randn(3, 4, 5, 5)
    torch.testing.assert_close(
        conv_batch_norm_gelu(conv, bn, nhwc(x)),
        nhwc(F.gelu(plain(conv(x)))))
    torch.testing.assert_close(bn.running_mean, plain.running_mean)

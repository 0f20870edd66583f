# Copyright (c) mmsmlp contributors. All rights reserved.
"""The token mixer's BatchNorm steps, organised for speed and memory:
BN -> GELU keeping only its input for backward, and a depth-wise conv
followed by a BN in eval mode run as one conv with folded weights."""
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class _BatchNormGELU(torch.autograd.Function):
    """``gelu(batch_norm(x))`` with batch statistics that keeps ``x`` and the
    per-channel statistics for backward, not the normalised tensor (one
    activation fewer per use); backward recomputes it in one pass."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum,
                eps):
        y, mean, invstd = torch.native_batch_norm(
            x, weight, bias, running_mean, running_var, True, momentum, eps)
        # Not the running statistics: backward uses the batch statistics.
        ctx.save_for_backward(x, weight, bias, mean, invstd)
        ctx.eps = eps
        return F.gelu(y)

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias, mean, invstd = ctx.saved_tensors
        shape = (1, -1) + (1, ) * (x.dim() - 2)
        scale = invstd * weight
        shift = bias - mean * scale
        y = torch.addcmul(
            shift.to(x.dtype).view(shape), x, scale.to(x.dtype).view(shape))
        grad_y = torch.ops.aten.gelu_backward(grad.to(x.dtype), y)
        grads = torch.ops.aten.native_batch_norm_backward(
            grad_y, x, weight, None, None, mean, invstd, True,
            ctx.eps, [True, True, True])
        return (*grads, None, None, None, None)


def batch_norm_gelu(norm: nn.Module, x: Tensor) -> Tensor:
    """``gelu(norm(x))`` over the last dim of a channels-last ``(..., C)``
    tensor. A BatchNorm sees it as ``(N, C, 1, 1)``: the same statistics as
    over ``(B, C, H, W)``, in the layout the memory already has, so neither
    eager kernels nor torch.compile's see a permuted tensor. Memory-saving
    when ``norm`` is a plain BatchNorm using batch statistics under
    autograd, eager."""
    if not isinstance(norm, _BatchNorm):  # e.g. GroupNorm: needs (B, C, H, W)
        return F.gelu(norm(x.movedim(-1, 1))).movedim(1, -1)
    y = x.reshape(-1, x.shape[-1], 1, 1)
    if (type(norm) is nn.BatchNorm2d and norm.training and norm.affine
            and norm.track_running_stats and norm.momentum is not None
            and torch.is_grad_enabled()
            and not torch.compiler.is_compiling()):
        norm.num_batches_tracked.add_(1)  # as nn.BatchNorm does
        y = _BatchNormGELU.apply(y, norm.weight, norm.bias, norm.running_mean,
                                 norm.running_var, norm.momentum, norm.eps)
    else:
        y = F.gelu(norm(y))  # torch.compile fuses this form by itself
    return y.view(x.shape)


def conv_batch_norm_gelu(conv: nn.Conv2d, norm: nn.Module,
                         x: Tensor) -> Tensor:
    """``gelu(norm(conv(x)))`` for a bias-free conv, on a channels-last
    ``(B, H, W, C)`` tensor (the conv sees its ``(B, C, H, W)`` view). When
    the BatchNorm uses its running statistics (eval mode, or frozen with
    ``norm_eval``) it is an affine map per output channel: folded into the
    conv's weight and bias, one pass over the activation is saved.
    Differentiable, so frozen-norm training still reaches the conv and the
    norm's affine parameters."""
    x = x.permute(0, 3, 1, 2)
    if (isinstance(norm, _BatchNorm) and not norm.training
            and norm.track_running_stats and norm.affine
            and conv.bias is None):
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        shift = norm.bias - norm.running_mean * scale
        return F.gelu(conv._conv_forward(
            x, conv.weight * scale.view(-1, 1, 1, 1),
            shift)).permute(0, 2, 3, 1)
    return batch_norm_gelu(norm, conv(x).permute(0, 2, 3, 1))

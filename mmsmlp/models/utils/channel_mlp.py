# Copyright (c) mmsmlp contributors. All rights reserved.
"""The channel mixer of sMLPNet (LayerNorm -> Linear -> GELU -> Linear),
organised to save activation memory and casts under autocast."""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layer_norm import layer_norm


class LayerNormKeepDtype(nn.LayerNorm):
    """LayerNorm whose output keeps the input's dtype under autocast.

    Autocast runs LayerNorm in fp32 and writes an fp32 output that the next
    Linear casts back to bf16/fp16: two extra passes over the activation.
    The kernel accumulates its statistics in fp32 for low-precision inputs
    anyway, so here it reads and writes the input's dtype (with a Triton
    kernel on CUDA, see :mod:`.layer_norm`). Identical to ``nn.LayerNorm``
    outside autocast.
    """

    def forward(self, x: Tensor) -> Tensor:
        return layer_norm(x, self.weight, self.bias, self.eps)


class _GELULinear(torch.autograd.Function):
    """``linear(gelu(h), weight, bias)`` that keeps only ``h`` for backward
    and recomputes ``gelu(h)`` there (one cheap elementwise pass), instead
    of keeping both ``h`` and ``gelu(h)``: the hidden activation is the
    largest tensor of the block (3x the channels)."""

    @staticmethod
    def forward(ctx, h, weight, bias):
        weight_h = weight.to(h.dtype)
        ctx.save_for_backward(h, weight_h)
        ctx.weight_dtype, ctx.bias_dtype = weight.dtype, bias.dtype
        return F.linear(F.gelu(h), weight_h, bias.to(h.dtype))

    @staticmethod
    def backward(ctx, grad_out):
        h, weight_h = ctx.saved_tensors
        g = F.gelu(h)
        grad_out = grad_out.to(h.dtype)
        grad_g = grad_out @ weight_h
        grad_h = torch.ops.aten.gelu_backward(grad_g, h)
        grad_2d = grad_out.reshape(-1, grad_out.shape[-1])
        grad_weight = (grad_2d.t() @ g.reshape(-1, g.shape[-1])).to(
            ctx.weight_dtype)
        grad_bias = grad_2d.sum(0, dtype=torch.float32).to(ctx.bias_dtype)
        return grad_h, grad_weight, grad_bias


class ChannelMLP(nn.Module):
    """``fc2(gelu(fc1(x)))`` over the last (channel) dimension.

    Args:
        channels (int): Input and output channels.
        hidden_channels (int): Hidden channels.
    """

    def __init__(self, channels: int, hidden_channels: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden_channels)
        self.fc2 = nn.Linear(hidden_channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        if (self.training and torch.is_grad_enabled()
                and not torch.compiler.is_compiling()):
            # torch.compile chooses what to recompute by itself.
            return _GELULinear.apply(h, self.fc2.weight, self.fc2.bias)
        return self.fc2(F.gelu(h))

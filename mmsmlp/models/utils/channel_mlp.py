# Copyright (c) mmsmlp contributors. All rights reserved.
"""The channel mixer of sMLPNet (LayerNorm -> Linear -> GELU -> Linear),
organised to save activation memory and casts under autocast."""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fast_paths import capturing_graph, compute_dtype, training_fast_path
from .layer_norm import layer_norm
from .sums import sum_rows


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
        return layer_norm(x, self.weight, self.bias, self.eps,
                          self.normalized_shape)


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
        if not training_fast_path(self):
            return self.fc2(F.gelu(self.fc1(x)))
        # Eager training: one autograd node that keeps the hidden activation
        # once, not twice (gelu recomputed in backward), and casts inside.
        dtype = compute_dtype(x)  # before autocast is turned off
        with torch.autocast(x.device.type, enabled=False):
            return _ChannelMLPFunction.apply(x, dtype, self.fc1.weight,
                                             self.fc1.bias, self.fc2.weight,
                                             self.fc2.bias)


class _ChannelMLPFunction(torch.autograd.Function):
    """``fc2(gelu(fc1(x)))`` for eager training, as one autograd node.

    It keeps the input and the hidden pre-activation ``h`` for backward and
    recomputes ``gelu(h)`` there (one cheap elementwise pass) instead of
    keeping both ``h`` and ``gelu(h)``: the hidden activation is the largest
    tensor of the block (3x the channels). Casts to the compute dtype happen
    inside, and the gradients are cast back in backward: no autograd node
    per cast or per Linear (eager training is bound by the host issuing
    ops)."""

    @staticmethod
    def forward(ctx, x, dtype, w1, b1, w2, b2):
        ctx.shape, ctx.dtypes = x.shape, [t.dtype for t in (x, w1, b1, w2, b2)]
        ctx.capturing = capturing_graph()
        x2d = x.reshape(-1, x.shape[-1]).to(dtype)
        w1, b1, w2, b2 = (t.to(dtype) for t in (w1, b1, w2, b2))
        h = torch.addmm(b1, x2d, w1.t())
        ctx.save_for_backward(x2d, h, w1, w2)
        return torch.addmm(b2, F.gelu(h), w2.t()).view(*x.shape[:-1], -1)

    @staticmethod
    def backward(ctx, grad):
        x2d, h, w1, w2 = ctx.saved_tensors
        grad = grad.reshape(-1, grad.shape[-1]).to(h.dtype)
        grad_h = torch.ops.aten.gelu_backward(grad @ w2, h)
        # The biases' gradients: PyTorch's one-op sum eagerly (the host is
        # the bound), the faster sum_rows in a CUDA graph capture.
        acc = torch.promote_types(h.dtype, torch.float32)  # sums in >= fp32
        bias_grads = [sum_rows(g) if ctx.capturing else g.sum(0, dtype=acc)
                      for g in (grad_h, grad)]
        grads = (grad_h @ w1, grad_h.t() @ x2d, bias_grads[0],
                 grad.t() @ F.gelu(h), bias_grads[1])
        grad_x, *grads = [g.to(dtype) for g, dtype in zip(grads, ctx.dtypes)]
        return grad_x.view(ctx.shape), None, *grads

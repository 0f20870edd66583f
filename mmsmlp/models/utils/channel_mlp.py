# Copyright (c) mmsmlp contributors. All rights reserved.
"""The channel mixer of sMLPNet (LayerNorm -> Linear -> GELU -> Linear),
organised to save activation memory and casts under autocast."""
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fast_paths import (capturing_graph, compute_dtype, training_fast_path,
                         use_triton)
from .layer_norm import layer_norm
from .sums import sum_dtype, sum_rows
from .triton_utils import gelu_and_grad, max_programs, row_tile, tl, triton


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
        ctx.triton = use_triton(x, backward=True)
        x2d = x.reshape(-1, x.shape[-1]).to(dtype)
        w1, b1, w2, b2 = (t.to(dtype) for t in (w1, b1, w2, b2))
        h = torch.addmm(b1, x2d, w1.t())
        ctx.save_for_backward(x2d, h, w1, w2)
        return torch.addmm(b2, F.gelu(h), w2.t()).view(*x.shape[:-1], -1)

    @staticmethod
    def backward(ctx, grad):
        x2d, h, w1, w2 = ctx.saved_tensors
        grad = grad.reshape(-1, grad.shape[-1]).to(h.dtype)
        acc = sum_dtype(h.dtype)
        if ctx.triton:
            # One pass over the hidden activation instead of three: the
            # recomputed gelu(h), its gradient and fc1's bias gradient.
            gelu_h, grad_h, grad_b1 = _gelu_backward(grad @ w2, h)
        else:
            grad_h = torch.ops.aten.gelu_backward(grad @ w2, h)
            gelu_h = F.gelu(h)
            # PyTorch's one-op sum eagerly (the host is the bound), the
            # faster sum_rows in a CUDA graph capture.
            grad_b1 = (sum_rows(grad_h) if ctx.capturing else
                       grad_h.sum(0, dtype=acc))
        grad_b2 = sum_rows(grad) if ctx.capturing else grad.sum(0, dtype=acc)
        grads = (grad_h @ w1, grad_h.t() @ x2d, grad_b1, grad.t() @ gelu_h,
                 grad_b2)
        grad_x, *grads = [g.to(dtype) for g, dtype in zip(grads, ctx.dtypes)]
        return grad_x.view(ctx.shape), None, *grads


def _gelu_backward(grad_gelu: Tensor, h: Tensor):
    """``gelu(h)``, the gradient ``gelu'(h) * grad_gelu`` (both in ``h``'s
    dtype) and that gradient's column sums (fp32, of the rounded values) in
    one Triton pass over 2-D contiguous tensors."""
    M, N = h.shape
    gelu_h, grad_h = torch.empty_like(h), torch.empty_like(h)
    block_m, block_n, warps = row_tile(N)
    # twice the usual programs: 12% less time over sMLPNet-T's widths (H200,
    # batch 128, bf16)
    programs = min(triton.cdiv(M, block_m), 2 * max_programs(h.device))
    sums = torch.empty(programs, N, device=h.device, dtype=torch.float32)
    _gelu_bwd[(programs, )](h, grad_gelu.contiguous(), gelu_h, grad_h, sums,
                            M, N, BLOCK_M=block_m, BLOCK_N=block_n,
                            num_warps=warps)
    return gelu_h, grad_h, sums.sum(0)


if triton is not None:

    @triton.jit
    def _gelu_bwd(H, DG, G, DH, Sums, M, N, BLOCK_M: tl.constexpr,
                  BLOCK_N: tl.constexpr):
        # As the LayerNorm's backward: each program walks over row tiles
        # pid, pid + P, ... and writes its partial column sums to row pid.
        pid = tl.program_id(0)
        cols = tl.arange(0, BLOCK_N)
        col_ok = cols < N
        acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for tile in range(pid, tl.cdiv(M, BLOCK_M), tl.num_programs(0)):
            rows = tile * BLOCK_M + tl.arange(0, BLOCK_M)
            mask = (rows < M)[:, None] & col_ok[None, :]
            offs = rows[:, None] * N + cols[None, :]
            h = tl.load(H + offs, mask=mask, other=0.).to(tl.float32)
            dg = tl.load(DG + offs, mask=mask, other=0.).to(tl.float32)
            g, slope = gelu_and_grad(h)
            tl.store(G + offs, g.to(G.dtype.element_ty), mask=mask)
            dh = (dg * slope).to(DH.dtype.element_ty)
            tl.store(DH + offs, dh, mask=mask)
            acc += dh.to(tl.float32)
        tl.store(Sums + pid * N + cols, tl.sum(acc, axis=0), mask=col_ok)

# Copyright (c) mmsmlp contributors. All rights reserved.
"""LayerNorm over the channels of a channels-last tensor, with a Triton
kernel on CUDA.

sMLPNet normalises 80 to 640 channels per position. PyTorch's CUDA
LayerNorm reduces one row per thread block, which is slow at such small
rows (its forward took 460 us on a 128x56x56x80 bf16 tensor on an H100, ten
times a copy of it). The kernels here normalise a tile of rows per program
and read the fp32 affine parameters directly, so autocast's casts of the
weight and bias (and of their gradients) are not needed either. Without
Triton, or on the CPU, :func:`layer_norm` is ``F.layer_norm``.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .fast_paths import use_triton
from .triton_utils import max_programs, row_tile, tl, triton


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float,
               normalized_shape: Optional[Tuple[int]] = None) -> Tensor:
    """LayerNorm over the last dim of ``x``, output in ``x``'s dtype.

    ``F.layer_norm``, or the Triton kernels for CUDA tensors in eager mode
    as :mod:`.fast_paths` says; torch.compile (whose own LayerNorm kernels
    are fast) and tracing see ``F.layer_norm``. ``normalized_shape``
    (default ``x.shape[-1:]``): a module passes its own, a constant, which
    the TorchScript-based ONNX exporter needs (it sees ``x.shape[-1:]`` as a
    dynamic value and refuses it)."""
    backward = torch.is_grad_enabled() and (
        x.requires_grad or weight.requires_grad or bias.requires_grad)
    if not use_triton(x, backward):
        with torch.autocast(x.device.type, enabled=False):
            return F.layer_norm(x, normalized_shape or x.shape[-1:],
                                weight.to(x.dtype), bias.to(x.dtype), eps)
    # A tile of rows per program: PyTorch's one row per thread block is
    # slow at sMLPNet's widths. Autocast does not touch Triton kernels.
    return _TritonLayerNorm.apply(x.contiguous(), weight, bias, eps)


# Triton kernels of layer_norm's fast form.
if triton is not None:

    @triton.jit
    def _layer_norm_fwd(X, W, B, Y, Stats, M, N, eps,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = tl.arange(0, BLOCK_N)
        row_ok = rows < M
        mask = row_ok[:, None] & (cols < N)[None, :]
        offs = rows[:, None] * N + cols[None, :]
        x = tl.load(X + offs, mask=mask, other=0.).to(tl.float32)
        mean = tl.sum(x, axis=1) / N
        xc = tl.where(mask, x - mean[:, None], 0.)
        rstd = 1. / tl.sqrt(tl.sum(xc * xc, axis=1) / N + eps)
        w = tl.load(W + cols, mask=cols < N, other=0.).to(tl.float32)
        b = tl.load(B + cols, mask=cols < N, other=0.).to(tl.float32)
        y = xc * rstd[:, None] * w[None, :] + b[None, :]
        tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)
        tl.store(Stats + rows, mean, mask=row_ok)  # mean, then 1 / std
        tl.store(Stats + M + rows, rstd, mask=row_ok)

    @triton.jit
    def _layer_norm_bwd(X, W, DY, DX, Stats, DWB, M, N,
                        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
        # Each program walks over row tiles pid, pid + P, ... and keeps its
        # own partial weight and bias gradients, rows pid of the two halves
        # of DWB (summed afterwards in torch).
        pid = tl.program_id(0)
        num_programs = tl.num_programs(0)
        cols = tl.arange(0, BLOCK_N)
        col_ok = cols < N
        w = tl.load(W + cols, mask=col_ok, other=0.).to(tl.float32)
        # Summed over the rows once, after the loop: a reduction across the
        # tile's rows in each iteration was 10x slower.
        dw = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        db = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
        for tile in range(pid, tl.cdiv(M, BLOCK_M), num_programs):
            rows = tile * BLOCK_M + tl.arange(0, BLOCK_M)
            row_ok = rows < M
            mask = row_ok[:, None] & col_ok[None, :]
            offs = rows[:, None] * N + cols[None, :]
            x = tl.load(X + offs, mask=mask, other=0.).to(tl.float32)
            dy = tl.load(DY + offs, mask=mask, other=0.).to(tl.float32)
            mean = tl.load(Stats + rows, mask=row_ok, other=0.)
            rstd = tl.load(Stats + M + rows, mask=row_ok, other=0.)
            xhat = tl.where(mask, (x - mean[:, None]) * rstd[:, None], 0.)
            wdy = dy * w[None, :]
            c1 = tl.sum(xhat * wdy, axis=1) / N
            c2 = tl.sum(wdy, axis=1) / N
            dx = (wdy - (xhat * c1[:, None] + c2[:, None])) * rstd[:, None]
            tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=mask)
            dw += dy * xhat
            db += dy
        tl.store(DWB + pid * N + cols, tl.sum(dw, axis=0), mask=col_ok)
        tl.store(DWB + (num_programs + pid) * N + cols, tl.sum(db, axis=0),
                 mask=col_ok)


class _TritonLayerNorm(torch.autograd.Function):
    """LayerNorm over the last dim of a contiguous tensor: output in the
    input's dtype, statistics in fp32, weight and bias gradients in their
    own dtype. Keeps the input and the per-row mean and 1/std for backward,
    as PyTorch's does."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        # Few ops around the kernels: eager training is bound by the host.
        N = x.shape[-1]
        M = x.numel() // N
        y = torch.empty_like(x)
        stats = torch.empty(2 * M, device=x.device, dtype=torch.float32)
        block_m, block_n, warps = row_tile(N)
        _layer_norm_fwd[(triton.cdiv(M, block_m), )](
            x, weight, bias, y, stats, M, N, eps,
            BLOCK_M=block_m, BLOCK_N=block_n, num_warps=warps)
        ctx.save_for_backward(x, weight, stats)
        return y

    @staticmethod
    def backward(ctx, dy):
        x, weight, stats = ctx.saved_tensors
        N = x.shape[-1]
        M = x.numel() // N
        if dy.dtype != x.dtype:
            dy = dy.to(x.dtype)
        dy = dy.contiguous()
        dx = torch.empty_like(x)
        block_m, block_n, _ = row_tile(N)
        # Half the forward's tile and 4 warps: 10-33% less time at
        # sMLPNet-T's four widths (H200, batch 128, bf16).
        block_m = max(1, block_m // 2)
        programs = min(triton.cdiv(M, block_m), max_programs(x.device))
        dwb = torch.empty(2, programs, N, device=x.device,
                          dtype=torch.float32)
        _layer_norm_bwd[(programs, )](
            x, weight, dy, dx, stats, dwb, M, N,
            BLOCK_M=block_m, BLOCK_N=block_n, num_warps=4)
        dw, db = dwb.sum(1).to(weight.dtype)
        return dx, dw, db, None

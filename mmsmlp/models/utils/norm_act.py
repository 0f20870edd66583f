# Copyright (c) mmsmlp contributors. All rights reserved.
"""The token mixer's BatchNorm steps: BN -> GELU, and a depth-wise conv ->
BN -> GELU, as their plain formulas, with the fast forms beside them (run
as :mod:`.fast_paths` says): BN -> GELU keeping only its input for backward
(with Triton kernels on CUDA: normalise, scale and GELU in one pass, and a
backward of two passes), and a conv -> BN in eval mode as one autograd
node in training or folded into one conv otherwise."""
import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from .fast_paths import (compute_dtype, fold_batch_norm,
                         recording_fast_path, training_fast_path, use_triton)
from .triton_utils import gelu_and_grad, max_programs, tl, triton


def batch_norm_gelu(norm: nn.Module, x: Tensor) -> Tensor:
    """``gelu(norm(x))`` over the last dim of a channels-last ``(..., C)``
    tensor. A BatchNorm sees it as ``(N, C, 1, 1)``: the same statistics as
    over ``(B, C, H, W)``, in the layout the memory already has, so neither
    eager kernels nor torch.compile's see a permuted tensor.

    A plain ``nn.BatchNorm2d`` (affine, with running statistics) has fast
    forms, run as :mod:`.fast_paths` says: in training, an autograd node that
    keeps only ``x`` for backward (with Triton kernels in ``triton-train``
    mode); frozen (eval mode) while autograd records, a node that keeps
    only ``x`` and stays off cuDNN; in inference without autograd, on CUDA,
    one Triton pass."""
    if not isinstance(norm, _BatchNorm):  # e.g. GroupNorm: needs (B, C, H, W)
        return F.gelu(norm(x.movedim(-1, 1))).movedim(1, -1)
    C = x.shape[-1]
    fusable = (type(norm) is nn.BatchNorm2d and norm.affine
               and norm.track_running_stats)
    if fusable and norm.momentum is not None and training_fast_path(norm):
        # Training: x, not the normalised tensor, is kept for backward (one
        # activation fewer per use).
        norm.num_batches_tracked.add_(1)  # as nn.BatchNorm does
        args = (norm.weight, norm.bias, norm.running_mean, norm.running_var,
                norm.momentum, norm.eps)
        if use_triton(x, backward=True):
            y = _TritonBatchNormGELU.apply(x.reshape(-1, C).contiguous(),
                                           *args)
        else:
            y = _BatchNormGELU.apply(x.reshape(-1, C, 1, 1), *args)
    elif fusable and not norm.training and recording_fast_path():
        # Frozen statistics (norm_eval) in a model that trains: PyTorch's
        # own kernels, not cuDNN's (:class:`_FrozenBatchNormGELU`).
        y = _FrozenBatchNormGELU.apply(x.reshape(-1, C, 1, 1), norm.weight,
                                       norm.bias, norm.running_mean,
                                       norm.running_var, norm.eps)
    elif (fusable and not norm.training and not torch.is_grad_enabled()
          and use_triton(x, backward=False)):
        # Inference: normalise, scale and GELU in one pass.
        y = _bn_gelu_apply(x.reshape(-1, C).contiguous(), norm.running_mean,
                           norm.running_var, norm.weight, norm.bias, norm.eps)
    else:  # the plain formula; torch.compile fuses it by itself
        y = F.gelu(norm(x.reshape(-1, C, 1, 1)))
    return y.view(x.shape)


def conv_batch_norm_gelu(conv: nn.Conv2d, norm: nn.Module,
                         x: Tensor) -> Tensor:
    """``gelu(norm(conv(x)))`` for a bias-free conv, on a channels-last
    ``(B, H, W, C)`` tensor (the conv sees its ``(B, C, H, W)`` view). When
    the BatchNorm uses its running statistics (eval mode, or frozen with
    ``norm_eval``) it is an affine map per output channel, and every mode
    but ``plain`` takes a fast form: where autograd records (a frozen-norm
    model that trains), one autograd node (:class:`_FrozenConvBatchNormGELU`,
    few ops for the host); otherwise (inference, torch.compile, exports) the
    norm folded into the conv's weight and bias, one pass over the
    activation fewer. Both are differentiable: frozen-norm training reaches
    the conv and the norm's affine parameters."""
    x = x.permute(0, 3, 1, 2)
    if not (isinstance(norm, _BatchNorm) and not norm.training
            and norm.track_running_stats and norm.affine
            and conv.bias is None and fold_batch_norm()):
        return batch_norm_gelu(norm, conv(x).permute(0, 2, 3, 1))
    if (recording_fast_path() and type(conv) is nn.Conv2d
            and conv.padding_mode == 'zeros'
            and not isinstance(conv.padding, str)):
        # Frozen statistics in a model that trains (norm_eval): one
        # autograd node, not the fold's dozen small ops and their backward.
        dtype = compute_dtype(x)  # before autocast is turned off
        with torch.autocast(x.device.type, enabled=False):
            return _FrozenConvBatchNormGELU.apply(
                x, dtype, conv, conv.weight, norm.weight, norm.bias,
                norm.running_mean, norm.running_var,
                norm.eps).permute(0, 2, 3, 1)
    # Running statistics: the norm is folded into the conv (one pass fewer).
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    shift = norm.bias - norm.running_mean * scale
    return F.gelu(conv._conv_forward(x, conv.weight * scale.view(-1, 1, 1, 1),
                                     shift)).permute(0, 2, 3, 1)


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
        # The normalised tensor again, as one eval-mode batch norm with the
        # batch statistics (var + eps = 1 / invstd^2): few ops, as eager
        # training is bound by the host issuing them.
        var = invstd.pow(-2).sub_(ctx.eps)
        y = torch.native_batch_norm(x, weight, bias, mean, var, False, 0.,
                                    ctx.eps)[0]
        grad_y = torch.ops.aten.gelu_backward(grad.to(x.dtype), y)
        grads = torch.ops.aten.native_batch_norm_backward(
            grad_y, x, weight, None, None, mean, invstd, True,
            ctx.eps, [True, True, True])
        return (*grads, None, None, None, None)


class _FrozenBatchNormGELU(torch.autograd.Function):
    """``gelu(batch_norm(x))`` with the running statistics (a BatchNorm
    frozen by ``norm_eval``, its affine terms training), on the ``(N, C, 1,
    1)`` view of a channels-last activation: keeps ``x`` only and
    recomputes the normalised tensor in backward, as :class:`_BatchNormGELU`.

    Through PyTorch's kernels, not cuDNN's: ``F.batch_norm`` picks cuDNN's
    inference kernel for this view, which took 50 ms of the 90 ms of GPU
    time of sMLPNet-T's Mask R-CNN backbone step (2 images of 800x1344,
    fp16, H200; ``bn_fw_inf_1C11_kernel_NCHW``, about 2 ms for 134400 rows
    of 80 channels); PyTorch's is one elementwise pass."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, eps):
        # in eval mode the saved mean and 1 / std come back empty; CUDA's
        # backward wants them anyway (and then uses the running statistics)
        y, save_mean, save_invstd = torch.native_batch_norm(
            x, weight, bias, running_mean, running_var, False, 0., eps)
        ctx.save_for_backward(x, weight, bias, running_mean, running_var,
                              save_mean, save_invstd)
        ctx.eps = eps
        return F.gelu(y)

    @staticmethod
    def backward(ctx, grad):
        grads = _frozen_batch_norm_gelu_backward(
            grad, *ctx.saved_tensors, ctx.eps, ctx.needs_input_grad[:3])
        return (*grads, None, None, None)


def _frozen_batch_norm_gelu_backward(grad, x, weight, bias, mean, var,
                                     save_mean, save_invstd, eps, mask):
    """The gradients of ``x``, ``weight`` and ``bias`` (those ``mask``
    asks for) of ``gelu(batch_norm(x))`` with the running statistics,
    recomputing the normalised tensor from ``x``."""
    y = torch.native_batch_norm(x, weight, bias, mean, var, False, 0.,
                                eps)[0]
    grad_y = torch.ops.aten.gelu_backward(grad.to(x.dtype), y)
    return torch.ops.aten.native_batch_norm_backward(
        grad_y, x, weight, mean, var, save_mean, save_invstd, False, eps,
        list(mask))


class _FrozenConvBatchNormGELU(torch.autograd.Function):
    """``gelu(batch_norm(conv(x)))`` with the running statistics (norm_eval)
    for a bias-free conv, as one autograd node: eager training of a frozen
    model is bound by the host issuing ops, and folding the norm into the
    conv under autograd costs a dozen ops on ``C`` values forward and as
    many backward; this costs three forward and four backward (one more
    pass over the activation each way than the fold). Keeps ``x`` and the
    conv's output, as the fold keeps ``x`` and its pre-GELU output; in the
    compute dtype (autocast's), cast inside."""

    @staticmethod
    def forward(ctx, x, dtype, conv, conv_weight, weight, bias, running_mean,
                running_var, eps):
        ctx.conv, ctx.eps = conv, eps
        ctx.dtypes = x.dtype, conv_weight.dtype
        x, conv_weight = x.to(dtype), conv_weight.to(dtype)
        y = conv._conv_forward(x, conv_weight, None)
        z, save_mean, save_invstd = torch.native_batch_norm(
            y, weight, bias, running_mean, running_var, False, 0., eps)
        ctx.save_for_backward(x, conv_weight, y, weight, bias, running_mean,
                              running_var, save_mean, save_invstd)
        return F.gelu(z)

    @staticmethod
    def backward(ctx, grad):
        (x, conv_weight, y, weight, bias, mean, var, save_mean,
         save_invstd) = ctx.saved_tensors
        conv, needs = ctx.conv, ctx.needs_input_grad
        grad_y, grad_weight, grad_bias = _frozen_batch_norm_gelu_backward(
            grad, y, weight, bias, mean, var, save_mean, save_invstd,
            ctx.eps, (needs[0] or needs[3], needs[4], needs[5]))
        grad_x = grad_conv = None
        if needs[0] or needs[3]:
            grad_x, grad_conv, _ = torch.ops.aten.convolution_backward(
                grad_y, x, conv_weight, None, conv.stride, conv.padding,
                conv.dilation, False, [0, 0], conv.groups,
                [needs[0], needs[3], False])
            if grad_x is not None:
                grad_x = grad_x.to(ctx.dtypes[0])
            if grad_conv is not None:
                grad_conv = grad_conv.to(ctx.dtypes[1])
        return (grad_x, None, None, grad_conv, grad_weight, grad_bias, None,
                None, None)


# Triton kernels of batch_norm_gelu's fast forms. They work on tiles of
# BLOCK_C channels (:func:`channel_tile`), a program id naming a tile's
# column chunk (fastest) and its rows: the chunks of a row run side by
# side, so they share the row's cache lines in L2.
if triton is not None:

    @triton.jit
    def _tile(tile, M, C, BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
        # Columns, mask and offsets of tile ``tile`` of (M, C) rows.
        n_chunks = tl.cdiv(C, BLOCK_C)
        rows = (tile // n_chunks) * BLOCK_M + tl.arange(0, BLOCK_M)
        cols = (tile % n_chunks) * BLOCK_C + tl.arange(0, BLOCK_C)
        mask = (rows < M)[:, None] & (cols < C)[None, :]
        return cols, mask, rows[:, None] * C + cols[None, :]

    @triton.jit
    def _row_program(C, BLOCK_C: tl.constexpr):
        # A program that loops over row tiles: its index r among its
        # chunk's programs, the chunk, the chunk count, columns and mask.
        n_chunks = tl.cdiv(C, BLOCK_C)
        chunk = tl.program_id(0) % n_chunks
        cols = chunk * BLOCK_C + tl.arange(0, BLOCK_C)
        return tl.program_id(0) // n_chunks, chunk, n_chunks, cols, cols < C

    @triton.jit
    def _channel_params(cols, Mean, Var, W, B, C, eps):
        # Per channel, in fp32: mean, 1 / std, weight, bias.
        ok = cols < C
        mean = tl.load(Mean + cols, mask=ok, other=0.).to(tl.float32)
        var = tl.load(Var + cols, mask=ok, other=1.).to(tl.float32)
        w = tl.load(W + cols, mask=ok, other=0.).to(tl.float32)
        b = tl.load(B + cols, mask=ok, other=0.).to(tl.float32)
        return mean, 1. / tl.sqrt(var + eps), w, b

    @triton.jit
    def _bn_stats(X, Sums, M, C, ROW_PROGRAMS, BLOCK_M: tl.constexpr,
                  BLOCK_C: tl.constexpr):
        # Per-program partial sums over rows of d and d * d, d = x - x[0]
        # (shifted by a sample of the channel, so the variance does not
        # cancel when the mean is large): rows r of the two halves of
        # Sums, for the row tiles r, r + ROW_PROGRAMS, ... of a chunk.
        r, chunk, n_chunks, cols, col_ok = _row_program(C, BLOCK_C)
        shift = tl.load(X + cols, mask=col_ok, other=0.).to(tl.float32)
        s1 = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
        s2 = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
        for t in range(r, tl.cdiv(M, BLOCK_M), ROW_PROGRAMS):
            _, mask, offs = _tile(t * n_chunks + chunk, M, C, BLOCK_M,
                                  BLOCK_C)
            d = tl.load(X + offs, mask=mask, other=0.).to(tl.float32)
            d = tl.where(mask, d - shift[None, :], 0.)
            s1 += d
            s2 += d * d
        tl.store(Sums + r * C + cols, tl.sum(s1, axis=0), mask=col_ok)
        tl.store(Sums + (ROW_PROGRAMS + r) * C + cols, tl.sum(s2, axis=0),
                 mask=col_ok)

    @triton.jit
    def _bn_stats_finalize(X, Sums, Mean, Var, RunMean, RunVar, M, C,
                           ROW_PROGRAMS, momentum, BLOCK: tl.constexpr,
                           BLOCK_P: tl.constexpr):
        # The batch mean and (biased) variance from _bn_stats' partial
        # sums, and the running statistics' update (unbiased variance), as
        # torch.batch_norm_update_stats. BLOCK_P partial rows per load (one
        # at a time took 8 us for sMLPNet-T's 105 rows).
        cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        ok = cols < C
        s1 = tl.zeros((BLOCK_P, BLOCK), dtype=tl.float32)
        s2 = tl.zeros((BLOCK_P, BLOCK), dtype=tl.float32)
        for p in range(0, ROW_PROGRAMS, BLOCK_P):
            rows = p + tl.arange(0, BLOCK_P)
            mask = (rows < ROW_PROGRAMS)[:, None] & ok[None, :]
            offs = rows[:, None] * C + cols[None, :]
            s1 += tl.load(Sums + offs, mask=mask, other=0.)
            s2 += tl.load(Sums + ROW_PROGRAMS * C + offs, mask=mask,
                          other=0.)
        d_mean = tl.sum(s1, axis=0) / M
        s2 = tl.sum(s2, axis=0)
        var = tl.maximum(s2 / M - d_mean * d_mean, 0.)
        mean = tl.load(X + cols, mask=ok, other=0.).to(tl.float32) + d_mean
        tl.store(Mean + cols, mean, mask=ok)
        tl.store(Var + cols, var, mask=ok)
        run_mean = tl.load(RunMean + cols, mask=ok, other=0.).to(tl.float32)
        run_var = tl.load(RunVar + cols, mask=ok, other=0.).to(tl.float32)
        run_mean += momentum * (mean - run_mean)
        run_var += momentum * (var * (M / (M - 1.)) - run_var)
        tl.store(RunMean + cols, run_mean.to(RunMean.dtype.element_ty),
                 mask=ok)
        tl.store(RunVar + cols, run_var.to(RunVar.dtype.element_ty),
                 mask=ok)

    @triton.jit
    def _bn_gelu_fwd(X, Y, Mean, Var, W, B, M, C, eps,
                     BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
        # y = gelu((x - mean) / sqrt(var + eps) * w + b) on (M, C) rows.
        cols, mask, offs = _tile(tl.program_id(0), M, C, BLOCK_M, BLOCK_C)
        mean, rstd, w, b = _channel_params(cols, Mean, Var, W, B, C, eps)
        scale = w * rstd
        shift = b - mean * scale
        x = tl.load(X + offs, mask=mask, other=0.).to(tl.float32)
        y, _ = gelu_and_grad(x * scale[None, :] + shift[None, :])
        tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)

    @triton.jit
    def _bn_gelu_bwd_reduce(X, DY, G, Mean, Var, W, B, Sums, M, C, eps,
                            ROW_PROGRAMS, BLOCK_M: tl.constexpr,
                            BLOCK_C: tl.constexpr):
        # g = dy * gelu'(y), rounded to G's dtype and written to G (the
        # gradient reaching the norm, as autograd would keep it), and
        # per-program partial sums over rows of g and g * xhat (the bias
        # and weight gradients): rows r of the two halves of Sums.
        r, chunk, n_chunks, cols, col_ok = _row_program(C, BLOCK_C)
        mean, rstd, w, b = _channel_params(cols, Mean, Var, W, B, C, eps)
        # Summed over the rows once, after the loop (as in the LayerNorm's).
        sum_g = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
        sum_gx = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
        for t in range(r, tl.cdiv(M, BLOCK_M), ROW_PROGRAMS):
            _, mask, offs = _tile(t * n_chunks + chunk, M, C, BLOCK_M,
                                  BLOCK_C)
            xhat = (tl.load(X + offs, mask=mask, other=0.).to(tl.float32) -
                    mean[None, :]) * rstd[None, :]
            _, dgelu = gelu_and_grad(xhat * w[None, :] + b[None, :])
            g = tl.load(DY + offs, mask=mask, other=0.).to(tl.float32) * dgelu
            g = g.to(G.dtype.element_ty)
            tl.store(G + offs, g, mask=mask)
            g = tl.where(mask, g.to(tl.float32), 0.)
            sum_g += g
            sum_gx += g * xhat
        tl.store(Sums + r * C + cols, tl.sum(sum_g, axis=0), mask=col_ok)
        tl.store(Sums + (ROW_PROGRAMS + r) * C + cols,
                 tl.sum(sum_gx, axis=0), mask=col_ok)

    @triton.jit
    def _bn_gelu_bwd_dx(X, G, DX, Mean, Var, W, Sums, M, C, eps,
                        BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr):
        # dx = w * rstd * (g - mean(g) - xhat * mean(g * xhat)).
        cols, mask, offs = _tile(tl.program_id(0), M, C, BLOCK_M, BLOCK_C)
        col_ok = cols < C
        mean = tl.load(Mean + cols, mask=col_ok, other=0.)
        rstd = 1. / tl.sqrt(
            tl.load(Var + cols, mask=col_ok, other=1.) + eps)
        w = tl.load(W + cols, mask=col_ok, other=0.).to(tl.float32)
        mean_g = tl.load(Sums + cols, mask=col_ok, other=0.) / M
        mean_gx = tl.load(Sums + C + cols, mask=col_ok, other=0.) / M
        xhat = (tl.load(X + offs, mask=mask, other=0.).to(tl.float32) -
                mean[None, :]) * rstd[None, :]
        g = tl.load(G + offs, mask=mask, other=0.).to(tl.float32)
        dx = (w * rstd)[None, :] * (g - mean_g[None, :] -
                                    xhat * mean_gx[None, :])
        tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=mask)


@functools.lru_cache
def channel_tile(C: int, device: torch.device):
    """``(BLOCK_M, BLOCK_C, num_warps, row_programs)`` of the kernels: tiles
    of ``BLOCK_C`` channels, the largest power of two dividing ``C`` (at
    most 128), so no lane idles. Padding sMLPNet's widths (80, 96, 112
    times a power of two) to a power of two left 12-38% of the lanes idle,
    and these kernels are bound by their arithmetic (an erf and an exp per
    element): 37.5% more time at sMLPNet-T's widths. Widths whose largest
    power-of-two divisor is below 16 take the whole row, padded.
    ``row_programs``: programs per chunk of the kernels that loop over
    row tiles (a few per SM in all)."""
    block_c = min(C & -C, 128)
    if block_c < 16:
        block_c = triton.next_power_of_2(C)
    block_m = max(1, 4096 // block_c)
    chunks = triton.cdiv(C, block_c)
    row_programs = max(1, max_programs(device) // chunks)
    return block_m, block_c, 8 if block_m * block_c >= 4096 else 4, \
        row_programs


def _grid(M: int, C: int, block_m: int, block_c: int) -> tuple:
    """One program per tile."""
    return (triton.cdiv(M, block_m) * triton.cdiv(C, block_c), )


def _bn_gelu_apply(x2d: Tensor, mean: Tensor, var: Tensor, weight: Tensor,
                   bias: Tensor, eps: float) -> Tensor:
    M, C = x2d.shape
    y = torch.empty_like(x2d)
    block_m, block_c, warps, _ = channel_tile(C, x2d.device)
    _bn_gelu_fwd[_grid(M, C, block_m, block_c)](
        x2d, y, mean, var, weight, bias, M, C, eps,
        BLOCK_M=block_m, BLOCK_C=block_c, num_warps=warps)
    return y


def _batch_stats(x2d: Tensor, running_mean: Tensor, running_var: Tensor,
                 momentum: float):
    """``torch.batch_norm_update_stats``: the batch mean and biased
    variance of ``(M, C)`` rows (fp32), the running statistics updated in
    place, in two kernels (PyTorch's statistics kernel for channels-last
    rows took about 4 times a read of them on an H200)."""
    M, C = x2d.shape
    if M < 2:  # as F.batch_norm in training
        raise ValueError('Expected more than 1 value per channel when '
                         f'training, got input size {tuple(x2d.shape)}')
    block_m, block_c, warps, row_programs = channel_tile(C, x2d.device)
    rows = min(row_programs, triton.cdiv(M, block_m))
    sums = torch.empty(2, rows, C, device=x2d.device, dtype=torch.float32)
    _bn_stats[(rows * triton.cdiv(C, block_c), )](
        x2d, sums, M, C, rows, BLOCK_M=block_m, BLOCK_C=block_c,
        num_warps=warps)
    mean = torch.empty(C, device=x2d.device, dtype=torch.float32)
    var = torch.empty_like(mean)
    _bn_stats_finalize[(triton.cdiv(C, 64), )](
        x2d, sums, mean, var, running_mean, running_var, M, C, rows,
        momentum, BLOCK=64, BLOCK_P=32)
    return mean, var


class _TritonBatchNormGELU(torch.autograd.Function):
    """``gelu(batch_norm(x))`` with batch statistics on ``(M, C)`` rows, in
    Triton: two kernels for the statistics and the running-statistics
    update, one for normalise + affine + GELU; backward recomputes the
    normalised tensor from ``x`` (the only activation kept) in a reduction
    kernel, which also writes the gradient reaching the norm, and an
    elementwise one."""

    @staticmethod
    def forward(ctx, x2d, weight, bias, running_mean, running_var, momentum,
                eps):
        mean, var = _batch_stats(x2d, running_mean, running_var, momentum)
        ctx.save_for_backward(x2d, weight, bias, mean, var)
        ctx.eps = eps
        return _bn_gelu_apply(x2d, mean, var, weight, bias, eps)

    @staticmethod
    def backward(ctx, grad):
        x2d, weight, bias, mean, var = ctx.saved_tensors
        M, C = x2d.shape
        if grad.dtype != x2d.dtype:
            grad = grad.to(x2d.dtype)
        grad = grad.contiguous()
        block_m, block_c, warps, row_programs = channel_tile(C, x2d.device)
        # A quarter of the tile and 4 warps for the reduction: 14-29% less
        # time at sMLPNet-T's four widths (H200, batch 128, bf16).
        rows = min(row_programs, triton.cdiv(M, block_m // 4))
        sums = torch.empty(2, rows, C, device=x2d.device,
                           dtype=torch.float32)
        g = torch.empty_like(x2d)
        _bn_gelu_bwd_reduce[(rows * triton.cdiv(C, block_c), )](
            x2d, grad, g, mean, var, weight, bias, sums, M, C, ctx.eps, rows,
            BLOCK_M=max(1, block_m // 4), BLOCK_C=block_c, num_warps=4)
        sums = sums.sum(1)  # (2, C): sum of g, sum of g * xhat
        dx = torch.empty_like(x2d)
        _bn_gelu_bwd_dx[_grid(M, C, block_m, block_c)](
            x2d, g, dx, mean, var, weight, sums, M, C, ctx.eps,
            BLOCK_M=block_m, BLOCK_C=block_c, num_warps=warps)
        grad_bias, grad_weight = sums.to(weight.dtype)
        return dx, grad_weight, grad_bias, None, None, None, None

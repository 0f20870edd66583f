# Copyright (c) mmsmlp contributors. All rights reserved.
"""The sMLP's axial mixes at small sizes as Triton kernels.

A mix is ``out[b] = w @ x[b]`` for each ``b`` of a contiguous ``(B, S, K)``
tensor, ``w`` being ``S x S``: along the width ``x`` is ``(N * H, W, C)``,
along the height ``(N, H, W * C)``. At sMLPNet's 7 to 56 positions a mix
moves one activation and computes little, but PyTorch's batched matmuls
(cuBLAS / CUTLASS kernels for tiny matrices) are slow at it: on an H200
(batch 128, bf16, 14 positions) 37-38 us forward and 75-82 us backward
against 11-12 us for a copy of the activation; these kernels 20-21 and
27 us (docs/benchmarks.md). Here each program multiplies
``S``-row tiles of ``x`` by ``w`` held in registers (and adds the bias,
if any), and backward does the input gradient and the weight and bias
gradients in one pass over ``x`` and the output gradient. The sizes the
kernels take: ``S <= MAX_SIZE``, in tiles that fit the GPU's shared
memory (:func:`fits`); larger mixes (dense tasks' inputs) stay with
``torch.bmm``. They run in CUDA graph captures of training
(:class:`.sparse_mlp._SparseMLPFunction`) and in eager inference in bf16
or fp16 (:func:`.sparse_mlp.sparse_mlp` without autograd), where
:func:`.fast_paths.use_triton` allows.
"""
import functools
from typing import Optional

import torch
from torch import Tensor

from .triton_utils import max_programs, tl, triton

MAX_SIZE = 64  # positions per axis the kernels take (at 224 px: 7 to 56)
# Triton's interpreter (the tests on CPU) has no shared memory limit: the
# tile sizes there are an H100's, so CPU tests run the tiles a GPU runs.
INTERPRETER_SHARED_MEMORY = 232448


def fits(size: int, dtype: torch.dtype, device: torch.device,
         backward: bool = False) -> bool:
    """Whether an axial mix over ``size`` positions in ``dtype`` takes the
    kernels on ``device``: ``size <= MAX_SIZE`` and a tile fits the
    device's shared memory (:func:`block_k`)."""
    return (triton is not None and size <= MAX_SIZE
            and _tile_columns(size, dtype, device, backward) is not None)


def block_k(size: int, itemsize: int, backward: bool,
            shared_memory: int) -> Optional[int]:
    """Columns per tile (``BLOCK_K``) for a mix over ``size`` positions:
    128 (64 at up to 16 positions: chosen from 32, 64 and 128 at
    sMLPNet-T's sizes, H200, batch 128, bf16), halved until the tiles fit
    ``shared_memory`` bytes a block; None if even 16 do not.

    Triton stages the dots' operands in shared memory: the ``S_PAD``-square
    weight and ``S_PAD x BLOCK_K`` tiles of the activation and the output
    gradient. For fp32 at ``S_PAD = BLOCK_K = 128`` (S = 64, backward) it
    asked an H100 for 393216 bytes, six such squares, where a block gets
    232448: that mix did not run. Estimated as two weights and four tiles
    in backward (two forward): at least what one weight and five tiles
    need, whichever the six were, as a tile is never larger than the
    weight.
    """
    s_pad = _s_pad(size, backward)
    tiles = 4 if backward else 2
    columns = 128 if size > 16 else 64
    while columns >= 16:
        need = itemsize * (2 * s_pad * s_pad + tiles * s_pad * columns)
        if need <= shared_memory:
            return columns
        columns //= 2
    return None


def _s_pad(size: int, spare_row: bool) -> int:
    # tl.dot needs >= 16; backward puts a row of ones below the S rows
    return max(16, triton.next_power_of_2(size + 1 if spare_row else size))


@functools.lru_cache
def _tile_columns(size: int, dtype: torch.dtype, device: torch.device,
                  backward: bool) -> Optional[int]:
    # cached: eager inference asks it for each mix
    if device.type == 'cuda':
        shared_memory = torch.cuda.get_device_properties(
            device).shared_memory_per_block_optin
    else:
        shared_memory = INTERPRETER_SHARED_MEMORY
    return block_k(size, dtype.itemsize, backward, shared_memory)


def _launch_sizes(x: Tensor, backward: bool = False):
    """Tile sizes (:func:`block_k`), and programs of a few tiles each."""
    B, S, K = x.shape
    block = _tile_columns(S, x.dtype, x.device, backward)
    tiles = B * triton.cdiv(K, block)
    return tiles, min(tiles, max_programs(x.device)), dict(
        S_PAD=_s_pad(S, backward), BLOCK_K=block,
        IEEE=x.dtype == torch.float32)


def axial_mix(w: Tensor, x: Tensor,
              bias: Optional[Tensor] = None) -> Tensor:
    """``w @ x[b] + bias[:, None]`` for each ``b`` of a contiguous ``(B, S,
    K)`` tensor (``torch.baddbmm`` with the bias expanded, or
    ``torch.bmm(w.expand(B, S, S), x)`` without one), in ``x``'s dtype
    (``w`` must have it too), accumulated in fp32."""
    tiles, programs, sizes = _launch_sizes(x)
    out = torch.empty_like(x)
    _mix_fwd[(programs, )](w, x, out, w if bias is None else bias,
                           *x.shape[1:], tiles, HAS_BIAS=bias is not None,
                           **sizes, num_warps=4)
    return out


def axial_mix_backward(w: Tensor, grad: Tensor, x: Tensor,
                       grad_x: Tensor) -> Tensor:
    """Backward of :func:`axial_mix` in one pass: adds ``w.t() @ grad[b]``
    to ``grad_x[b]`` (in place) and returns the gradients of ``w``, ``sum_b
    grad[b] @ x[b].t()``, and of the bias, ``grad`` summed over ``b`` and
    ``K``, in fp32. All ``(B, S, K)`` and contiguous."""
    tiles, programs, sizes = _launch_sizes(x, backward=True)
    S = x.shape[1]
    # per program, w's gradient with the bias's as an extra column
    partial = torch.empty(programs, S, S + 1, device=x.device,
                          dtype=torch.float32)
    _mix_bwd[(programs, )](w, grad, x, grad_x, partial, *x.shape[1:], tiles,
                           **sizes, num_warps=4)
    sums = partial.sum(0)
    return sums[:, :S], sums[:, S]


if triton is not None:

    @triton.jit
    def _dot(a, b, IEEE: tl.constexpr):
        # fp32 inputs: full fp32 products, as torch.bmm without TF32
        if IEEE:
            return tl.dot(a, b, input_precision='ieee')
        return tl.dot(a, b)

    @triton.jit
    def _tile(tile, S, K, S_PAD: tl.constexpr, BLOCK_K: tl.constexpr):
        # Offsets and mask of tile ``tile``: rows 0..S of one b, BLOCK_K
        # columns.
        k_blocks = tl.cdiv(K, BLOCK_K)
        b = (tile // k_blocks).to(tl.int64)
        cols = (tile % k_blocks) * BLOCK_K + tl.arange(0, BLOCK_K)
        rows = tl.arange(0, S_PAD)
        offs = b * S * K + rows[:, None] * K + cols[None, :]
        return offs, (rows < S)[:, None] & (cols < K)[None, :]

    @triton.jit
    def _weight(W, S, S_PAD: tl.constexpr, TRANSPOSE: tl.constexpr):
        # The S x S weight (or its transpose) zero-padded to S_PAD x S_PAD.
        i = tl.arange(0, S_PAD)[:, None]
        j = tl.arange(0, S_PAD)[None, :]
        offs = j * S + i if TRANSPOSE else i * S + j
        return tl.load(W + offs, mask=(i < S) & (j < S), other=0.)

    @triton.jit
    def _mix_fwd(W, X, Out, Bias, S, K, tiles, HAS_BIAS: tl.constexpr,
                 S_PAD: tl.constexpr, BLOCK_K: tl.constexpr,
                 IEEE: tl.constexpr):
        w = _weight(W, S, S_PAD, False)
        rows = tl.arange(0, S_PAD)
        bias = tl.load(Bias + rows, mask=rows < S, other=0.).to(tl.float32)
        for tile in range(tl.program_id(0), tiles, tl.num_programs(0)):
            offs, mask = _tile(tile, S, K, S_PAD, BLOCK_K)
            x = tl.load(X + offs, mask=mask, other=0.)
            out = _dot(w, x, IEEE)
            if HAS_BIAS:
                out += bias[:, None]
            tl.store(Out + offs, out.to(Out.dtype.element_ty), mask=mask)

    @triton.jit
    def _mix_bwd(W, G, X, DX, Partial, S, K, tiles, S_PAD: tl.constexpr,
                 BLOCK_K: tl.constexpr, IEEE: tl.constexpr):
        # Each program walks over tiles pid, pid + P, ... and writes its
        # partial weight gradient to Partial[pid, :, :S] and its partial
        # bias gradient to Partial[pid, :, S] (summed afterwards). The bias
        # gradient is the product with a row of ones put in x's padding
        # (row S; S_PAD > S): column S of dw. (A sum over the tile's
        # columns in each iteration doubled the kernel's time.)
        pid = tl.program_id(0)
        w_t = _weight(W, S, S_PAD, True)
        dw = tl.zeros((S_PAD, S_PAD), dtype=tl.float32)
        ones = (tl.arange(0, S_PAD) == S)[:, None]
        for tile in range(pid, tiles, tl.num_programs(0)):
            offs, mask = _tile(tile, S, K, S_PAD, BLOCK_K)
            g = tl.load(G + offs, mask=mask, other=0.)
            x = tl.load(X + offs, mask=mask, other=0.)
            dx = tl.load(DX + offs, mask=mask, other=0.).to(tl.float32)
            dx += _dot(w_t, g, IEEE)
            tl.store(DX + offs, dx.to(DX.dtype.element_ty), mask=mask)
            # ones in row S where g has columns (elsewhere g is 0)
            x = tl.where(ones, 1., x.to(tl.float32)).to(x.dtype)
            dw += _dot(g, tl.trans(x), IEEE)
        i = tl.arange(0, S_PAD)[:, None]
        j = tl.arange(0, S_PAD)[None, :]
        tl.store(Partial + pid * S * (S + 1) + i * (S + 1) + j, dw,
                 mask=(i < S) & (j <= S))

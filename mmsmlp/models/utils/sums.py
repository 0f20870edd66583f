# Copyright (c) mmsmlp contributors. All rights reserved.
"""Sums over the rows of a tall matrix (bias and mixing-weight gradients
over all positions of a batch), for the hand-written backward passes."""
import torch
from torch import Tensor

# mm's out_dtype (bf16/fp16 products written in fp32, on CUDA): torch 2.11
# and 2.14 have it; a torch without it takes the plain sum.
_MM_OUT_DTYPE = hasattr(torch.ops.aten.mm, 'dtype')


def sum_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype gradients are summed in: fp32, or fp64 for fp64 tensors
    (``torch.promote_types(dtype, torch.float32)`` for floating dtypes,
    without its dispatcher call: the eager backward passes run it per block,
    and an eager step is bound by the host's calls)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def sum_rows(x: Tensor) -> Tensor:
    """``x.sum(0)`` of a contiguous 2-D tensor, accumulated and returned in
    fp32.

    PyTorch's CUDA reduction over the first dim of a tall bf16 matrix takes
    3 to 10 times as long as reading it (H200: 80 us for 401408 x 80, whose
    read takes 16 us; docs/benchmarks.md), and a training step has dozens
    of them. On CUDA, bf16/fp16 rows are summed as a ``(1, N) x (N, C)``
    product with ones instead, accumulated and written in fp32 (mm's
    ``out_dtype``): about the time of one read. Three ops instead of one,
    so the backward passes take it in CUDA graph captures
    (:func:`.fast_paths.capturing_graph`), where ops cost the host nothing.
    """
    if (_MM_OUT_DTYPE and x.is_cuda
            and x.dtype in (torch.bfloat16, torch.float16)):
        ones = x.new_ones(1, x.shape[0])
        return torch.mm(ones, x, out_dtype=torch.float32)[0]
    return x.sum(0, dtype=sum_dtype(x.dtype))

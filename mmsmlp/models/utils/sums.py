# Copyright (c) mmsmlp contributors. All rights reserved.
"""Sums over the rows of a tall matrix (bias and mixing-weight gradients
over all positions of a batch), for the hand-written backward passes."""
import torch
from torch import Tensor


def sum_rows(x: Tensor) -> Tensor:
    """``x.sum(0)`` of a contiguous 2-D tensor, accumulated and returned in
    fp32.

    PyTorch's CUDA reduction over the first dim of a tall bf16 matrix reads
    it 3 to 10 times slower than a copy would (H200: 80 us for 401408 x 80,
    a 16 us read; `docs/benchmarks.md`), and a training step has dozens of
    them. On CUDA, bf16/fp16 rows are summed as a ``(1, N) x (N, C)``
    product with ones instead, accumulated and written in fp32 (mm's
    ``out_dtype``): about the time of one read.
    """
    if x.is_cuda and x.dtype in (torch.bfloat16, torch.float16):
        ones = x.new_ones(1, x.shape[0])
        return torch.mm(ones, x, out_dtype=torch.float32)[0]
    return x.sum(0, dtype=torch.promote_types(x.dtype, torch.float32))

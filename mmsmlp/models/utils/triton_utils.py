# Copyright (c) mmsmlp contributors. All rights reserved.
"""What mmsmlp's Triton kernels share: the (optional) Triton import and
their launch sizes. When they run: :mod:`.fast_paths`."""
import functools

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs
    triton = tl = None

if triton is not None:

    @triton.jit
    def gelu_and_grad(y):
        # Exact (erf) GELU, as F.gelu, and its derivative (the BatchNorm +
        # GELU kernels, the channel MLP's backward).
        cdf = 0.5 * (1. + tl.math.erf(y * 0.7071067811865476))
        pdf = tl.exp(-0.5 * y * y) * 0.3989422804014327
        return y * cdf, cdf + y * pdf
else:
    gelu_and_grad = None


# Both are cached: eager training is bound by the host's time per op.
@functools.lru_cache
def max_programs(device: torch.device) -> int:
    """Programs of a kernel that loops over row tiles: a few per SM."""
    if device.type != 'cuda':
        return 32  # Triton's interpreter (tests) runs programs one by one
    return 4 * torch.cuda.get_device_properties(device).multi_processor_count


@functools.lru_cache
def row_tile(n: int):
    """``(BLOCK_M, BLOCK_N, num_warps)`` for rows of ``n`` elements: the
    whole row, and rows enough for about 4K elements per tile."""
    block_n = triton.next_power_of_2(n)
    block_m = max(1, min(64, 4096 // block_n))
    return block_m, block_n, 8 if block_n * block_m >= 4096 else 4

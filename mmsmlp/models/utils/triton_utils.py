# Copyright (c) mmsmlp contributors. All rights reserved.
"""When mmsmlp's Triton kernels run.

``MMSMLP_TRITON`` in the environment (or :data:`ENABLED` and
:data:`TRAINING`) chooses:

- ``1`` (default): in inference, i.e. without autograd, on CUDA tensors;
- ``train``: also in training, with their backward kernels;
- ``0``: never (PyTorch's ops, as on a CPU).

Training leaves them off by default because an eager training step of
sMLPNet is bound by the host issuing ops, and a Triton launch plus an
autograd Function cost the host more than the PyTorch ops they replace
(measured on an H200: the step slowed by about 15% with them, while their
kernels took 10% less GPU time; see docs/benchmarks.md). Where the GPU is
the bound (large inputs, a fast host), ``MMSMLP_TRITON=train`` pays.

torch.compile and tracing always see the plain PyTorch ops: inductor writes
its own fused kernels. Tests run the kernels on CPU tensors under Triton's
interpreter (``TRITON_INTERPRET=1`` set before mmsmlp is imported, and
:data:`ON_CPU` set to True). Triton comes with PyTorch's CUDA wheels.
"""
import functools
import os
from typing import Tuple

import torch
from torch import Tensor

from .eager import is_eager

try:
    import triton
    import triton.language as tl
except ImportError:  # CPU-only installs
    triton = tl = None


def parse_mode(mode: str) -> Tuple[bool, bool]:
    """``(ENABLED, TRAINING)`` for a value of ``MMSMLP_TRITON``."""
    if mode not in ('0', '1', 'train'):
        raise ValueError(f'MMSMLP_TRITON must be 0, 1 or train, got {mode!r}')
    return mode != '0', mode == 'train'


ENABLED, TRAINING = parse_mode(os.environ.get('MMSMLP_TRITON', '1'))
ON_CPU = False


def use_triton(x: Tensor, backward: bool) -> bool:
    """Whether the Triton kernels run for ``x``; ``backward``: whether the
    op is recorded by autograd (training).

    Triton launches on the current CUDA device, so a tensor on another one
    (a model on ``cuda:1`` in a process whose current device is 0) takes
    PyTorch's ops."""
    return (ENABLED and (TRAINING or not backward) and triton is not None
            and (ON_CPU or (x.is_cuda
                            and x.get_device() == torch.cuda.current_device()))
            and is_eager())


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

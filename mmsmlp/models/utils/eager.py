# Copyright (c) mmsmlp contributors. All rights reserved.
"""Shared conditions of the eager fast paths (hand-written autograd nodes
and Triton kernels)."""
import torch
from torch import Tensor


def is_eager() -> bool:
    """Neither torch.compile (which derives its own backward and writes its
    own kernels) nor tracing (mmengine's FLOP counter) is recording."""
    return not torch.compiler.is_compiling() and not torch.jit.is_tracing()


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype autocast computes matmuls of ``x`` in: autocast's, when it
    is on for ``x``'s device, else ``x``'s own."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Shared conditions of the eager fast paths (hand-written autograd nodes
and Triton kernels) and of the size shortcuts that an export must not bake
in."""
import torch
from torch import Tensor


def is_eager() -> bool:
    """Neither torch.compile (which derives its own backward and writes its
    own kernels; torch.export counts as compiling too) nor tracing
    (mmengine's FLOP counter, the TorchScript-based ONNX exporter) is
    recording."""
    return not torch.compiler.is_compiling() and not torch.jit.is_tracing()


def is_exporting() -> bool:
    """A graph with symbolic sizes is being recorded for deployment:
    torch.export (also run by the dynamo-based ONNX exporter) or the
    TorchScript-based ONNX exporter.

    A Python branch on a feature size (``if size == n``, ``if pad``) would
    bake the example input's size into such a graph (or, in torch.export,
    fail on a guard of a dynamic dimension), so the code takes the general
    formula instead, which gives the same values at every size. torch.compile
    and mmengine's FLOP counter (plain ``torch.jit.trace``) keep the
    shortcuts: they record one size at a time anyway.
    """
    return torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype autocast computes matmuls of ``x`` in: autocast's, when it
    is on for ``x``'s device, else ``x``'s own."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Which form of sMLPNet's layers runs: the one switch, and the predicates
every layer asks.

Each layer is written as its plain formula first (PyTorch's ops,
differentiated by autograd: the paper's model, the form torch.compile and
the exporters see, and the reference every fast form is tested against on
CPU), with its faster forms beside it, each behind one predicate from here:

- :func:`training_fast_path`: a hand-written autograd node (the sMLP, the
  channel MLP, BatchNorm + GELU) in eager training: fewer ops for the host
  to issue, fewer activations kept (:func:`recording_fast_path` for a
  frozen BatchNorm in a model that trains);
- :func:`use_triton`: mmsmlp's Triton kernels (LayerNorm, BatchNorm +
  GELU);
- :func:`fold_batch_norm`: an eval-mode BatchNorm taken with the
  depth-wise conv before it (folded into the conv; where autograd records,
  one node with it);
- :func:`capturing_graph`: while a training step is captured into a CUDA
  graph, the autograd nodes' forms with fewer passes over the activations
  and more ops (eagerly, ops are what costs).

The mode says which may run:

================  =============================================================
``plain``         none: the plain formulas everywhere (the reference)
``no-triton``     autograd nodes in eager training, folded BatchNorms
``default``       as ``no-triton``, plus the Triton kernels in eager
                  inference (no autograd) on CUDA tensors
``triton-train``  as ``default``, plus the Triton kernels in eager training
================  =============================================================

``MMSMLP_FAST_PATHS`` in the environment sets it at import (default
``default``); :class:`set_mode` changes it at run time, for the rest of the
process or, as a context manager, for a block. The older ``MMSMLP_TRITON``
is still read when ``MMSMLP_FAST_PATHS`` is unset, with its meanings:
``0`` is ``no-triton``, ``1`` is ``default``, ``train`` is
``triton-train``.

Training leaves the Triton kernels off by default because an eager training
step of sMLPNet is bound by the host issuing ops, and a Triton launch plus
an autograd Function cost the host more than the PyTorch ops they replace
(measured on an H200: the step slowed by about 15% with them, while their
kernels took 10% less GPU time; see docs/benchmarks.md). Where the GPU is
the bound (large inputs, a fast host), ``triton-train`` pays; and while a
training forward is captured into a CUDA graph (:class:`graph_capture`,
:mod:`.cuda_graph`), ``default`` takes the kernels in training too: a
replay costs the host nothing per kernel.

torch.compile (which derives its own backward and writes its own kernels)
and tracing (mmengine's FLOP counter, the TorchScript-based ONNX exporter)
never take the autograd nodes or the Triton kernels, in any mode
(:func:`is_eager`). Triton comes with PyTorch's CUDA wheels; tests run its
kernels on CPU tensors under Triton's interpreter (``TRITON_INTERPRET=1``
set before mmsmlp is imported, and ``set_mode(triton_on_cpu=True)``).

The predicates run on every forward of every block, and an eager training
step is bound by the host: they read plain attributes of one object and
allocate nothing.
"""
import os
from typing import Optional

import torch
from torch import Tensor, nn

from .triton_utils import triton

MODES = ('plain', 'no-triton', 'default', 'triton-train')
# MMSMLP_TRITON's values and the modes they meant.
LEGACY_TRITON_MODES = {
    '0': 'no-triton',
    '1': 'default',
    'train': 'triton-train'
}


class _Switch:
    """The mode, and what it turns on (read by the predicates)."""
    __slots__ = ('mode', 'autograd', 'fold', 'triton_inference',
                 'triton_training', 'triton_on_cpu', 'in_graph')

    def set(self, mode: str, triton_on_cpu: bool) -> None:
        if mode not in MODES:
            raise ValueError(
                f'fast-path mode must be one of {MODES}, got {mode!r}')
        self.mode = mode
        self.autograd = self.fold = mode != 'plain'
        has_triton = triton is not None
        self.triton_inference = has_triton and mode in ('default',
                                                        'triton-train')
        self.triton_training = has_triton and mode == 'triton-train'
        # Test-only: the kernels also run for CPU tensors (under Triton's
        # interpreter).
        self.triton_on_cpu = triton_on_cpu


def mode_from_environment(environ=os.environ) -> str:
    """The mode ``MMSMLP_FAST_PATHS`` (or the older ``MMSMLP_TRITON``)
    names; ``default`` if neither is set."""
    mode = environ.get('MMSMLP_FAST_PATHS')
    legacy = environ.get('MMSMLP_TRITON')
    if mode is not None:
        if mode not in MODES:
            raise ValueError(
                f'MMSMLP_FAST_PATHS must be one of {MODES}, got {mode!r}')
        if legacy is not None and LEGACY_TRITON_MODES.get(legacy) != mode:
            raise ValueError(
                f'MMSMLP_FAST_PATHS={mode} and MMSMLP_TRITON={legacy} '
                'disagree: set only MMSMLP_FAST_PATHS')
        return mode
    if legacy is not None:
        if legacy not in LEGACY_TRITON_MODES:
            raise ValueError('MMSMLP_TRITON must be 0, 1 or train, got '
                             f'{legacy!r} (or set MMSMLP_FAST_PATHS to one '
                             f'of {MODES})')
        return LEGACY_TRITON_MODES[legacy]
    return 'default'


_switch = _Switch()
_switch.set(mode_from_environment(), triton_on_cpu=False)
_switch.in_graph = False


def get_mode() -> str:
    """The current mode, one of :data:`MODES`."""
    return _switch.mode


class set_mode:
    """Set the fast-path mode (and, for tests, whether the Triton kernels
    also run for CPU tensors); ``None`` keeps the current setting.

    Like ``torch.set_grad_enabled``: a call sets it for the rest of the
    process; ``with set_mode('plain'):`` sets it for the block, and restores
    the previous setting at its end.
    """

    def __init__(self,
                 mode: Optional[str] = None,
                 *,
                 triton_on_cpu: Optional[bool] = None):
        self.prev = (_switch.mode, _switch.triton_on_cpu)
        _switch.set(self.prev[0] if mode is None else mode,
                    self.prev[1] if triton_on_cpu is None else triton_on_cpu)

    def __enter__(self) -> None:
        pass

    def __exit__(self, *exc) -> None:
        _switch.set(*self.prev)


class graph_capture:
    """Within it, a training forward is being captured into a CUDA graph
    (:class:`.cuda_graph.GraphedTraining`): the Triton kernels run in
    training too (in the ``default`` and ``triton-train`` modes). Replayed,
    a launch costs the host nothing, so the kernels' GPU time is what
    counts, and theirs is shorter than PyTorch's ops'."""

    def __enter__(self) -> None:
        self.prev = _switch.in_graph
        _switch.in_graph = True

    def __exit__(self, *exc) -> None:
        _switch.in_graph = self.prev


def capturing_graph() -> bool:
    """Whether a training step is being captured into a CUDA graph
    (:class:`graph_capture`). The autograd nodes then take the forms that
    cost the GPU fewer passes over the activations for more ops: a replay
    issues ops for free, while eager training is bound by issuing them."""
    return _switch.in_graph


def is_eager() -> bool:
    """Neither torch.compile (which derives its own backward and writes its
    own kernels; torch.export counts as compiling too) nor tracing
    (mmengine's FLOP counter, the TorchScript-based ONNX exporter) is
    recording."""
    return not torch.compiler.is_compiling() and not torch.jit.is_tracing()


def training_fast_path(module: nn.Module) -> bool:
    """Whether ``module`` runs its hand-written autograd node: in training
    (train mode, autograd recording) in eager mode, unless the mode is
    ``plain``."""
    return module.training and recording_fast_path()


def recording_fast_path() -> bool:
    """Whether a hand-written autograd node runs where autograd records,
    whatever the module's mode (a BatchNorm frozen with ``norm_eval`` in a
    model that trains): in eager mode, unless the mode is ``plain``."""
    return _switch.autograd and torch.is_grad_enabled() and is_eager()


def use_triton(x: Tensor, backward: bool) -> bool:
    """Whether the Triton kernels run for ``x``; ``backward``: whether the
    op is recorded by autograd (training).

    Triton launches on the current CUDA device, so a tensor on another one
    (a model on ``cuda:1`` in a process whose current device is 0) takes
    PyTorch's ops."""
    return ((_switch.triton_training or
             (_switch.in_graph and _switch.triton_inference)
             if backward else _switch.triton_inference)
            and (_switch.triton_on_cpu or
                 (x.is_cuda and x.get_device() == torch.cuda.current_device()))
            and is_eager())


def fold_batch_norm() -> bool:
    """Whether a BatchNorm that uses its running statistics is taken with
    the conv before it (every mode but ``plain``): folded into the conv (in
    torch.compile and in exports too: one pass over the activation fewer
    for them as well), or, where autograd records eagerly
    (:func:`recording_fast_path`), one autograd node with it."""
    return _switch.fold


def is_exporting() -> bool:
    """A graph with symbolic sizes is being recorded for deployment:
    torch.export (also run by the dynamo-based ONNX exporter) or the
    TorchScript-based ONNX exporter.

    A Python branch on a feature size (``if size == n``, ``if pad``) would
    bake the example input's size into such a graph (or, in torch.export,
    fail on a guard of a dynamic dimension), so the code takes the general
    formula instead, which gives the same values at every size. torch.compile
    and mmengine's FLOP counter (plain ``torch.jit.trace``) keep the
    shortcuts: they record one size at a time anyway. Not a fast path: the
    same in every mode.
    """
    return torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype autocast computes matmuls of ``x`` in: autocast's, when it
    is on for ``x``'s device, else ``x``'s own (the autograd nodes turn
    autocast off and cast inside)."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype

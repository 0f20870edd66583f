# Copyright (c) mmsmlp contributors. All rights reserved.
"""The sparse MLP (sMLP) token mixer of sMLPNet."""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from torch import Tensor, nn

from . import axial_mix as kernels
from .fast_paths import (capturing_graph, compute_dtype, is_eager,
                         is_exporting, training_fast_path, use_triton)
from .sums import sum_dtype, sum_rows


def resample_axial_mixing(weight: Tensor, bias: Tensor,
                          size: int) -> Tuple[Tensor, Tensor]:
    """Resample an ``N x N`` axial mixing map and its ``N`` bias to ``size``.

    The map is a kernel over (output position, input position) sampled on an
    ``N``-point grid, so it is resized like an image (bilinear, pixel-centre
    aligned, as mmpretrain resizes position tables). Each output then sums
    over ``size`` inputs instead of ``N``, so the map is scaled by
    ``N / size``: a constant row keeps its mean, and the mixed feature keeps
    its magnitude. At ``size == N`` the inputs are returned untouched.
    Differentiable, so gradients reach the stored ``N x N`` weights.

    In an export (:func:`.fast_paths.is_exporting`) ``size`` is symbolic
    and the interpolation is always part of the graph, so the exported model
    resamples for the size it is run at; at ``size == N`` it is the identity
    (pixel-centre aligned bilinear resizing to the same size copies every
    value, and the scale is 1).
    """
    return resample_axial_mixings([weight], [bias], size)[0]


def resample_axial_mixings(weights: Sequence[Tensor],
                           biases: Sequence[Tensor],
                           size: int) -> List[Tuple[Tensor, Tensor]]:
    """:func:`resample_axial_mixing` of several maps of one size (a stage's
    sMLPs) at once: one interpolation for all of them. Eager training is
    bound by the host issuing ops, and one resampling per map and axis cost
    Mask R-CNN's backbone step 32 ops a block."""
    n = weights[0].shape[-1]
    if not is_exporting() and size == n:
        return list(zip(weights, biases))
    weight = F.interpolate(
        torch.stack(weights).unsqueeze(1), size=(size, size),
        mode='bilinear', align_corners=False).squeeze(1) * (n / size)
    bias = F.interpolate(
        torch.stack(biases).unsqueeze(1), size=size, mode='linear',
        align_corners=False).squeeze(1)
    return list(zip(weight.unbind(), bias.unbind()))


def bias_table(b_h: Tensor, b_w: Tensor, fuse: Tensor) -> Tensor:
    """What the axial mixes' biases add to the sMLP output, ``(H, W, C)``.

    ``b_h`` varies along the height only, ``b_w`` along the width only, and
    both are constant over channels, so their part of the fuse is
    ``b_h[h] * f_h.sum(1)[c] + b_w[w] * f_w.sum(1)[c]``: a small table, added
    to the output once instead of to each full-size mixed copy.
    """
    C = fuse.shape[0]
    _, f_w, f_h = fuse.split(C, dim=1)
    return (b_h.view(-1, 1, 1) * f_h.sum(1) +
            b_w.view(1, -1, 1) * f_w.sum(1))


def fuse_mixes(x: Tensor, x_w: Tensor, x_h: Tensor, fuse: Tensor) -> Tensor:
    """The 1x1 fuse over the concatenation ``[x, x_w, x_h]`` (the official
    order) as three matmuls summed (eagerly, accumulated in one buffer):
    the concatenation is never built. ``(B, H, W, C)`` tensors (any views
    of that memory)."""
    C = x.shape[-1]
    # the transposed (C, C) blocks of the fuse weight: one transpose, cast
    # by hand (autocast casts only out-of-place ops: the eager sums below)
    f_id_t, f_w_t, f_h_t = fuse.to(x_w.dtype).t().split(C)
    if not is_eager():
        # torch.compile, and tracing (mmengine's FLOP counter, the
        # TorchScript-based ONNX exporter): three products summed out of
        # place, which inductor fuses into the pointwise kernel that
        # follows (bias table, residual, LayerNorm). An addmm, in place or
        # not, is there a copy of its input then a matmul into it.
        return (torch.mm(x.reshape(-1, C), f_id_t) +
                torch.mm(x_w.reshape(-1, C), f_w_t) +
                torch.mm(x_h.reshape(-1, C), f_h_t)).view(x.shape)
    # Eagerly, accumulated in place: an out-of-place addmm copies its input
    # first.
    out = torch.mm(x.reshape(-1, C), f_id_t)
    out.addmm_(x_w.reshape(-1, C), f_w_t)
    out.addmm_(x_h.reshape(-1, C), f_h_t)
    return out.view(x.shape)


def axial_mixes(x: Tensor, w_h: Tensor, w_w: Tensor, triton: bool = False,
                b_h: Optional[Tensor] = None,
                b_w: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
    """``x`` mixed along the height and along the width (with the biases
    ``b_h`` and ``b_w`` if given), each one batched matmul of a contiguous
    ``(B, H, W, C)`` tensor. The shared weight is an expanded view, read
    once per batch, never copied. ``triton``: small mixes as Triton kernels
    (no autograd of their own: eager inference, and the training node
    :class:`_SparseMLPFunction` in a CUDA graph capture)."""
    B, H, W, C = x.shape
    # (B, H, W * C) through the flat view: the same view, but torch.export
    # can then prove the reshape valid for symbolic sizes (it cannot for
    # the direct merge of W and C).
    x_h = _mix(w_h, x.view(-1).view(B, H, W * C), triton, b_h)
    x_w = _mix(w_w, x.view(B * H, W, C), triton, b_w)
    return x_h.view(x.shape), x_w.view(x.shape)


def _mix(w: Tensor, x: Tensor, triton: bool,
         bias: Optional[Tensor] = None) -> Tensor:
    """``w @ x[b] (+ bias[:, None])`` for each ``b`` of ``(B, S, K)``:
    ``torch.bmm`` (``baddbmm``), or one Triton pass (:mod:`.axial_mix`)
    when ``triton`` and ``S`` fits, in the dtype autocast would give the
    matmul."""
    if triton:
        dtype = compute_dtype(x)
        if kernels.fits(x.shape[1], dtype, x.device):
            return kernels.axial_mix(w.to(dtype), x.to(dtype),
                                     None if bias is None else bias.to(dtype))
    B, S, K = x.shape
    if bias is None:
        return torch.bmm(w.expand(B, S, S), x)
    return torch.baddbmm(bias.view(1, S, 1).expand(B, S, K),
                         w.expand(B, S, S), x)


def _mix_backward(w: Tensor, grad: Tensor, x: Tensor, grad_x: Tensor,
                  capturing: bool, triton: bool) -> Tuple[Tensor, Tensor]:
    """Backward of :func:`_mix` with a bias: adds ``w.t() @ grad[b]`` to
    ``grad_x[b]`` in place and returns the gradients of ``w`` and of the
    bias, summed in >= fp32: one Triton pass when ``triton`` and ``S``
    fits; else a batched matmul and one small matrix per batch entry,
    summed as PyTorch's one-op sum eagerly (the host is the bound) or the
    faster :func:`.sums.sum_rows` in a capture, and the bias's a reduction
    of ``grad``."""
    B, S, _ = x.shape
    if triton and kernels.fits(S, x.dtype, x.device, backward=True):
        return kernels.axial_mix_backward(w, grad, x, grad_x)
    grad_x.baddbmm_(w.t().expand(B, S, S), grad)
    per_entry = torch.bmm(grad, x.transpose(1, 2))
    acc = sum_dtype(x.dtype)
    if capturing:
        grad_w = sum_rows(per_entry.view(B, S * S)).view(S, S)
    else:
        grad_w = per_entry.sum(0, dtype=acc)
    return grad_w, grad.sum((0, 2), dtype=acc)


def sparse_mlp(x: Tensor, w_h: Tensor, b_h: Tensor, w_w: Tensor, b_w: Tensor,
               fuse: Tensor) -> Tensor:
    """The sMLP of a contiguous ``(B, H, W, C)`` tensor: the
    :func:`axial_mixes`, fused by :func:`fuse_mixes`; the biases come in as
    :func:`bias_table`, or inside the mixes where they are Triton kernels."""
    # Without autograd (the kernels have no backward of their own), the
    # small 16-bit mixes as Triton kernels: cuBLAS' kernels are slow at
    # them. In fp32 cuBLAS is faster (the kernels' fp32 products use no
    # tensor cores): sMLPNet-T's eager inference, H200, batch 128, GPU time
    # 12.9 against 14.3 ms in bf16, 49.8 against 45.4 in fp32.
    triton = (not torch.is_grad_enabled()
              and compute_dtype(x) != torch.float32
              and use_triton(x, backward=False))
    if triton:
        # Eagerly, where the host issuing ops can be the bound: the kernels
        # add the biases in their pass (a mix too large for them, as
        # baddbmm), seven ops fewer than the table (net of the biases'
        # casts) and no pass to add it.
        x_h, x_w = axial_mixes(x, w_h, w_w, True, b_h, b_w)
        return fuse_mixes(x, x_w, x_h, fuse)
    x_h, x_w = axial_mixes(x, w_h, w_w, False)
    return fuse_mixes(x, x_w, x_h, fuse).add_(bias_table(b_h, b_w, fuse))


class SparseMLP(BaseModule):
    """Sparse MLP: mixes tokens along the rows and along the columns.

    Each axial mix is one linear map over the positions of that axis, shared
    across the other axis and all channels. The input, its width-mixed and its
    height-mixed copies are fused by a linear map over channels (the official
    1x1 conv on their concatenation).

    Args:
        channels (int): Number of channels.
        resolution (Sequence[int]): ``(H, W)`` of the feature map the mixing
            weights are defined for (the trained size). Other sizes resample
            them, see :func:`resample_axial_mixing`.
        init_cfg (dict, optional): Initialization config.

    Shape:
        ``(B, H, W, C)`` -> ``(B, H, W, C)`` (channels last), any ``H, W``.
    """

    def __init__(self, channels: int, resolution: Sequence[int],
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.resolution = tuple(resolution)
        h, w = self.resolution
        self.mix_h = nn.Linear(h, h)  # mixes positions along the height
        self.mix_w = nn.Linear(w, w)  # mixes positions along the width
        self.fuse = nn.Linear(3 * channels, channels, bias=False)

    @staticmethod
    def resample_together(smlps: Sequence['SparseMLP'], height: int,
                          width: int) -> List[tuple]:
        """The mixing maps of several sMLPs for a ``height x width`` input,
        resampled together (:func:`resample_axial_mixings`): each sMLP's
        ``maps`` argument."""
        hs = resample_axial_mixings([m.mix_h.weight for m in smlps],
                                    [m.mix_h.bias for m in smlps], height)
        ws = resample_axial_mixings([m.mix_w.weight for m in smlps],
                                    [m.mix_w.bias for m in smlps], width)
        return [(*h, *w) for h, w in zip(hs, ws)]

    def forward(self, x: Tensor, maps: Optional[tuple] = None) -> Tensor:
        """``maps``: ``(w_h, b_h, w_w, b_w)`` resampled for ``x``'s size
        by :meth:`resample_together` (a stage does it for its blocks); by
        default the module resamples its own."""
        _, H, W, _ = x.shape
        if maps is None:
            maps = self.resample_together([self], H, W)[0]
        params = (*maps, self.fuse.weight)
        x = x.contiguous()
        if not training_fast_path(self):
            return sparse_mlp(x, *params)
        # Training: one autograd node instead of a dozen, as the host
        # issuing ops is the eager bound; in autocast's dtype, cast inside.
        dtype = compute_dtype(x)  # before autocast is turned off
        with torch.autocast(x.device.type, enabled=False):
            return _SparseMLPFunction.apply(x, dtype, *params)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Weights trained at another input size are resampled to this
        # module's resolution, as mmpretrain does for Swin's bias tables.
        for name, size in (('mix_h', self.resolution[0]),
                           ('mix_w', self.resolution[1])):
            w_key, b_key = f'{prefix}{name}.weight', f'{prefix}{name}.bias'
            if w_key not in state_dict or b_key not in state_dict:
                continue
            weight, bias = state_dict[w_key], state_dict[b_key]
            if (weight.dim() == 2 and weight.shape[0] == weight.shape[1]
                    and bias.shape == weight.shape[:1]
                    and weight.shape[0] != size):
                MMLogger.get_current_instance().info(
                    f'Resample {w_key} and {b_key} from {weight.shape[0]} to '
                    f'{size} positions')
                state_dict[w_key], state_dict[b_key] = resample_axial_mixing(
                    weight.float(), bias.float(), size)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _input_grads(g: Tensor, x: Tensor, w_h: Tensor, w_w: Tensor,
                 fuse: Tensor, capturing: bool, triton: bool):
    """The sMLP's backward from the output gradient ``g`` (``(N, C)``) to
    its input ``x`` (``(B, H, W, C)``) and the axial mixes' parameters:
    ``x``'s gradient, ``g f_id + w_w^T g_w`` (along rows) ``+ w_h^T g_h``
    (along columns) accumulated in one buffer in place, with ``g_w``,
    ``g_h`` the gradients reaching the mixes; and the gradients of ``w_h``
    and ``b_h``, and of ``w_w`` and ``b_w`` (fp32), see
    :func:`_mix_backward`."""
    B, H, W, C = x.shape
    f_id, f_w, f_h = fuse.split(C, dim=1)
    g_w = torch.mm(g, f_w).view(B * H, W, C)
    g_h = torch.mm(g, f_h).view(B, H, W * C)
    grad_x = torch.mm(g, f_id)
    grads_w = _mix_backward(w_w, g_w, x.view(B * H, W, C),
                            grad_x.view(B * H, W, C), capturing, triton)
    grads_h = _mix_backward(w_h, g_h, x.view(B, H, W * C),
                            grad_x.view(B, H, W * C), capturing, triton)
    return grad_x.view(x.shape), grads_h, grads_w


class _SparseMLPFunction(torch.autograd.Function):
    """The sMLP for training: one autograd node per block instead of a
    dozen, with a hand-written backward (the three gradients reaching ``x``
    accumulated in one buffer in place), in the compute dtype.

    Each mix adds its bias inside its batched matmul (``baddbmm``), and
    the mixes are saved with their biases, so the fuse gradient needs no
    bias correction. Eagerly, where the host issuing ops is the bound,
    that costs a pass over each mix for its bias gradient and saves ops; in
    a CUDA graph capture (:func:`.fast_paths.capturing_graph`) the small
    mixes are Triton kernels that add the bias, and sum its gradient, in
    the pass they make anyway (:mod:`.axial_mix`), and the weight
    gradients of larger ones are summed as :func:`.sums.sum_rows`."""

    @staticmethod
    def forward(ctx, x, dtype, *params):
        # Casts to the compute dtype happen in here, and the gradients are
        # cast back in backward: no autograd node per cast.
        ctx.dtypes = [t.dtype for t in (x, *params)]
        ctx.capturing = capturing_graph()
        ctx.triton = use_triton(x, backward=True)
        x = x.to(dtype)
        w_h, b_h, w_w, b_w, fuse = (p.to(dtype) for p in params)
        x_h, x_w = axial_mixes(x, w_h, w_w, ctx.triton, b_h, b_w)
        ctx.save_for_backward(x, x_h, x_w, w_h, w_w, fuse)
        return fuse_mixes(x, x_w, x_h, fuse)

    @staticmethod
    def backward(ctx, grad):
        x, x_h, x_w, w_h, w_w, fuse = ctx.saved_tensors
        C = x.shape[-1]
        g = grad.reshape(-1, C)
        if g.dtype != x.dtype:
            g = g.to(x.dtype)
        grad_x, (grad_w_h, grad_b_h), (grad_w_w, grad_b_w) = _input_grads(
            g, x, w_h, w_w, fuse, ctx.capturing, ctx.triton)
        g_t = g.t()
        grad_fuse = torch.cat([
            torch.mm(g_t, t.view(-1, C)) for t in (x, x_w, x_h)], dim=1)
        grads = (grad_x, grad_w_h, grad_b_h, grad_w_w, grad_b_w, grad_fuse)
        grads = [g.to(dtype) for g, dtype in zip(grads, ctx.dtypes)]
        return grads[0], None, *grads[1:]

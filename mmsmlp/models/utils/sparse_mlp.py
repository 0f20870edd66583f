# Copyright (c) mmsmlp contributors. All rights reserved.
"""The sparse MLP (sMLP) token mixer of sMLPNet."""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from torch import Tensor, nn

from .fast_paths import compute_dtype, is_exporting, training_fast_path


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
    n = weight.shape[-1]
    if not is_exporting() and size == n:
        return weight, bias
    weight = F.interpolate(
        weight[None, None], size=(size, size), mode='bilinear',
        align_corners=False)[0, 0] * (n / size)
    bias = F.interpolate(
        bias[None, None], size=size, mode='linear', align_corners=False)[0, 0]
    return weight, bias


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
    order) as three accumulated matmuls: the concatenation is never built.
    ``(B, H, W, C)`` tensors (any views of that memory)."""
    C = x.shape[-1]
    f_id, f_w, f_h = fuse.split(C, dim=1)
    out = torch.mm(x.reshape(-1, C), f_id.t())
    out = torch.addmm(out, x_w.reshape(-1, C), f_w.t())
    out = torch.addmm(out, x_h.reshape(-1, C), f_h.t())
    return out.view(x.shape)


def sparse_mlp(x: Tensor, w_h: Tensor, b_h: Tensor, w_w: Tensor, b_w: Tensor,
               fuse: Tensor) -> Tensor:
    """The sMLP of a contiguous ``(B, H, W, C)`` tensor.

    ``x_h`` (mixed along the height) and ``x_w`` (along the width) are each
    one batched matmul; the shared weight is an expanded view, read once per
    batch, never copied. They are fused by :func:`fuse_mixes`; the biases
    come in as :func:`bias_table`.
    """
    B, H, W, C = x.shape
    # (B, H, W * C) through the flat view: the same view, but torch.export
    # can then prove the reshape valid for symbolic sizes (it cannot for
    # the direct merge of W and C).
    x_h = torch.bmm(w_h.expand(B, H, H), x.view(-1).view(B, H, W * C))
    x_w = torch.bmm(w_w.expand(B * H, W, W), x.view(B * H, W, C))
    return fuse_mixes(x, x_w.view(x.shape), x_h.view(x.shape),
                      fuse).add_(bias_table(b_h, b_w, fuse))


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

    def forward(self, x: Tensor) -> Tensor:
        _, H, W, _ = x.shape
        params = (*resample_axial_mixing(self.mix_h.weight, self.mix_h.bias,
                                         H),
                  *resample_axial_mixing(self.mix_w.weight, self.mix_w.bias,
                                         W), self.fuse.weight)
        x = x.contiguous()
        if not training_fast_path(self):
            return sparse_mlp(x, *params)
        # Eager training: one autograd node instead of a dozen, as the host
        # issuing ops is the bound; in autocast's dtype, cast inside.
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


class _SparseMLPFunction(torch.autograd.Function):
    """The sMLP for eager training: one autograd node per block instead of
    a dozen, with a hand-written backward (the three gradients reaching
    ``x`` accumulated in one buffer in place).

    An eager training step is bound by the host issuing ops, so this form
    spends GPU passes to save ops: each mix adds its bias inside its batched
    matmul (``baddbmm``), and the mixes are saved with their biases, so the
    bias gradients are one reduction each and the fuse gradient needs no
    bias correction (:func:`sparse_mlp`'s bias table, for inference and
    torch.compile, saves the passes instead)."""

    @staticmethod
    def forward(ctx, x, dtype, *params):
        # Casts to the compute dtype happen in here, and the gradients are
        # cast back in backward: no autograd node per cast.
        ctx.dtypes = [t.dtype for t in (x, *params)]
        x = x.to(dtype)
        w_h, b_h, w_w, b_w, fuse = (p.to(dtype) for p in params)
        B, H, W, C = x.shape
        x_h = torch.baddbmm(b_h.view(1, H, 1).expand(B, H, W * C),
                            w_h.expand(B, H, H), x.view(B, H, W * C))
        x_w = torch.baddbmm(b_w.view(1, W, 1).expand(B * H, W, C),
                            w_w.expand(B * H, W, W), x.view(B * H, W, C))
        ctx.save_for_backward(x, x_h, x_w, w_h, w_w, fuse)
        return fuse_mixes(x, x_w, x_h, fuse)

    @staticmethod
    def backward(ctx, grad):
        x, x_h, x_w, w_h, w_w, fuse = ctx.saved_tensors
        B, H, W, C = x.shape
        acc = torch.promote_types(x.dtype, torch.float32)  # sums in >= fp32
        g = grad.reshape(-1, C)
        f_id, f_w, f_h = fuse.split(C, dim=1)
        g_w = torch.mm(g, f_w).view(B * H, W, C)  # gradient reaching x_w
        g_h = torch.mm(g, f_h).view(B, H, W * C)  # gradient reaching x_h
        # dx = g f_id + w_w^T g_w (along rows) + w_h^T g_h (along columns)
        grad_x = torch.mm(g, f_id)
        grad_x.view(B * H, W, C).baddbmm_(w_w.t().expand(B * H, W, W), g_w)
        grad_x.view(B, H, W * C).baddbmm_(w_h.t().expand(B, H, H), g_h)
        # Mixing weights: one small matrix per batch entry, then summed.
        grad_w_w = torch.bmm(g_w, x.view(B * H, W, C).transpose(1, 2)).sum(
            0, dtype=acc)
        grad_w_h = torch.bmm(g_h, x.view(B, H, W * C).transpose(1, 2)).sum(
            0, dtype=acc)
        grad_fuse = torch.cat([
            torch.mm(g.t(), t.view(-1, C)) for t in (x, x_w, x_h)], dim=1)
        grads = (grad_x.view(B, H, W, C), grad_w_h, g_h.sum((0, 2), dtype=acc),
                 grad_w_w, g_w.sum((0, 2), dtype=acc), grad_fuse)
        grads = [g.to(dtype) for g, dtype in zip(grads, ctx.dtypes)]
        return grads[0], None, *grads[1:]

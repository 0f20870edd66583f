# Copyright (c) mmsmlp contributors. All rights reserved.
"""The sparse MLP (sMLP) token mixer of sMLPNet."""
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from torch import Tensor, nn


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
    """
    n = weight.shape[-1]
    if size == n:
        return weight, bias
    weight = F.interpolate(
        weight[None, None], size=(size, size), mode='bilinear',
        align_corners=False)[0, 0] * (n / size)
    bias = F.interpolate(
        bias[None, None], size=size, mode='linear', align_corners=False)[0, 0]
    return weight, bias


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
        B, H, W, C = x.shape
        wh, bh = resample_axial_mixing(self.mix_h.weight, self.mix_h.bias, H)
        ww, bw = resample_axial_mixing(self.mix_w.weight, self.mix_w.bias, W)
        # Both mixes are plain (batched) matmuls on the contiguous NHWC
        # tensor, their biases added by the same kernel (baddbmm).
        x_h = torch.baddbmm(
            bh.view(1, H, 1), wh.expand(B, H, H), x.reshape(B, H, W * C))
        x_w = torch.baddbmm(
            bw.view(1, W, 1), ww.expand(B * H, W, W), x.reshape(B * H, W, C))
        # The fuse over the concatenation [x, x_w, x_h] (the official order)
        # as three accumulated matmuls: the concatenation is never built.
        f_id, f_w, f_h = self.fuse.weight.split(C, dim=1)
        out = torch.mm(x.reshape(-1, C), f_id.t())
        out = torch.addmm(out, x_w.view(-1, C), f_w.t())
        out = torch.addmm(out, x_h.view(-1, C), f_h.t())
        return out.view(B, H, W, -1)

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

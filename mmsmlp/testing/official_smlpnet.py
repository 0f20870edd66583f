# Copyright (c) mmsmlp contributors. All rights reserved.
"""The official sMLPNet formulation, in the official state-dict key layout.

A plain restatement of microsoft/SPACH ``models/smlp.py`` (class
``sMLPNet``), checked against the official code's logits in
``tests/test_converter.py``. It is the reference that tests (checkpoints of
any architecture in the official layout) and the benchmark (speed of the
official formulation) compare against; it is not part of the model zoo.
"""
import torch
from torch import nn


class _BNGELUConv(nn.Module):  # official: BN_Activ_Conv

    def __init__(self, channels):
        super().__init__()
        self.BN = nn.BatchNorm2d(channels)
        self.Activation = nn.GELU()
        self.Conv = nn.Conv2d(
            channels, channels, 3, padding=1, groups=channels, bias=False)

    def forward(self, x):
        return self.Conv(self.Activation(self.BN(x)))


class _DWConvBlock(nn.Module):

    def __init__(self, channels):
        super().__init__()
        self.conv_merge = _BNGELUConv(channels)

    def forward(self, x):
        return self.conv_merge(x)


class _SMLPBlock(nn.Module):
    """Official layer names: ``proj_h`` acts on the width axis and ``proh_w``
    on the height axis (the permutes decide, not the names)."""

    def __init__(self, n, channels):
        super().__init__()
        self.activation = nn.GELU()
        self.BN = nn.BatchNorm2d(channels)
        self.proj_h = nn.Conv2d(n, n, 1)
        self.proh_w = nn.Conv2d(n, n, 1)
        self.fuse = nn.Conv2d(channels * 3, channels, 1, bias=False)

    def forward(self, x):  # (B, C, H, W)
        x = self.activation(self.BN(x))
        x_h = self.proj_h(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x_w = self.proh_w(x.permute(0, 2, 1, 3)).permute(0, 2, 1, 3)
        return self.fuse(torch.cat([x, x_h, x_w], dim=1))


class _ToChannelsLast(nn.Module):  # official: einops Rearrange

    def forward(self, x):
        return x.permute(0, 2, 3, 1)


class _ToChannelsFirst(nn.Module):

    def forward(self, x):
        return x.permute(0, 3, 1, 2)


class _FeedForward(nn.Module):

    def __init__(self, dim, hidden):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.),
            nn.Linear(hidden, dim), nn.Dropout(0.))

    def forward(self, x):
        return self.net(x)


class OfficialSMLPNet(nn.Module):
    """sMLPNet as the official code builds it (eval-mode outputs equal)."""

    def __init__(self, in_chans=3, dim=80, alpha=3, num_classes=1000,
                 patch_size=4, image_size=224, depths=(2, 8, 14, 2)):
        super().__init__()
        self.depths = list(depths)
        n = image_size // patch_size
        self.to_patch_embedding = nn.ModuleList()
        self.token_mix = nn.ModuleList()
        self.channel_mix = nn.ModuleList()
        for i, depth in enumerate(self.depths):
            c = dim * 2**i
            self.to_patch_embedding.append(
                nn.Sequential(
                    nn.Conv2d(in_chans, c, patch_size, patch_size, bias=False)
                    if i == 0 else nn.Conv2d(c // 2, c, 2, 2, bias=False)))
            for _ in range(depth):
                self.channel_mix.append(
                    nn.Sequential(_ToChannelsLast(), nn.LayerNorm(c),
                                  _FeedForward(c, c * alpha),
                                  _ToChannelsFirst()))
                self.token_mix.append(
                    nn.Sequential(_DWConvBlock(c), _SMLPBlock(n // 2**i, c)))
        c_last = dim * 2**(len(self.depths) - 1)
        self.batch_norm = nn.BatchNorm2d(c_last)
        self.mlp_head = nn.Sequential(nn.Linear(c_last, num_classes))

    def forward(self, x):
        block = 0
        for i, depth in enumerate(self.depths):
            x = self.to_patch_embedding[i](x)
            for _ in range(depth):
                x = x + self.token_mix[block](x)
                x = x + self.channel_mix[block](x)
                block += 1
        x = self.batch_norm(x).mean(dim=[2, 3])
        return self.mlp_head(x)

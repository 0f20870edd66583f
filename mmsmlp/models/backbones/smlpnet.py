# Copyright (c) mmsmlp contributors. All rights reserved.
"""sMLPNet backbone: `Sparse MLP for Image Recognition: Is Self-Attention
Really Necessary? <https://arxiv.org/abs/2109.05422>`_ (AAAI 2022)."""
import warnings
from itertools import chain
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule, ModuleList, Sequential
from mmengine.utils import to_2tuple
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..utils.channel_mlp import ChannelMLP, LayerNormKeepDtype
from ..utils.fast_paths import is_exporting, training_fast_path
from ..utils.norm_act import batch_norm_gelu, conv_batch_norm_gelu
from ..utils.sparse_mlp import SparseMLP


class SMLPBlock(BaseModule):
    """One sMLPNet block, on channels-last ``(B, H, W, C)`` features.

    ``x = x + token_mix(x); x = x + channel_mix(x)``, where token_mix is
    BN -> GELU -> depth-wise 3x3 conv -> BN -> GELU -> sparse MLP and
    channel_mix is LayerNorm -> MLP.

    Args:
        channels (int): Number of channels.
        resolution (Sequence[int]): ``(H, W)`` the sMLP weights are for.
        mlp_ratio (float): Hidden width of the channel MLP over ``channels``.
        drop_path_rate (float): Stochastic depth rate. Defaults to 0.
        norm_cfg (dict): Config of the token mixer's norms (BatchNorm-like).
        with_cp (bool): Use gradient checkpointing. Defaults to False.
    """

    def __init__(self,
                 channels: int,
                 resolution: Sequence[int],
                 mlp_ratio: float = 3.,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='BN'),
                 with_cp: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.with_cp = with_cp
        self.norm1 = build_norm_layer(norm_cfg, channels)[1]
        self.dwconv = nn.Conv2d(
            channels, channels, 3, padding=1, groups=channels, bias=False)
        self.norm2 = build_norm_layer(norm_cfg, channels)[1]
        self.smlp = SparseMLP(channels, resolution)
        self.norm3 = LayerNormKeepDtype(channels)
        self.ffn = ChannelMLP(channels, int(channels * mlp_ratio))
        self.drop_path = DropPath(
            drop_path_rate) if drop_path_rate > 0. else nn.Identity()

    def token_mix(self, x: Tensor, maps: Optional[tuple] = None) -> Tensor:
        # All on the channels-last (B, H, W, C) memory: the depth-wise conv
        # takes its (B, C, H, W) view (PyTorch's channels_last format).
        y = batch_norm_gelu(self.norm1, x)
        y = conv_batch_norm_gelu(self.dwconv, self.norm2, y)
        return self.smlp(y, maps)

    def forward(self, x: Tensor, maps: Optional[tuple] = None) -> Tensor:
        """``maps``: the sMLP's mixing maps for ``x``'s size, resampled by
        the stage (:class:`SMLPStage`); by default the sMLP resamples its
        own."""

        def _inner_forward(x):
            if isinstance(self.drop_path, DropPath) and training_fast_path(
                    self.drop_path):
                # Eager training is bound by the host issuing ops: both
                # branches' per-sample scales from one draw, each applied
                # with its residual add as one op (the same distribution).
                token_scale, channel_scale = drop_path_scales(
                    x, self.drop_path.drop_prob)
                x = torch.addcmul(x, self.token_mix(x, maps), token_scale)
                return torch.addcmul(x, self.ffn(self.norm3(x)),
                                     channel_scale)
            x = x + self.drop_path(self.token_mix(x, maps))
            x = x + self.drop_path(self.ffn(self.norm3(x)))
            return x

        if self.with_cp and x.requires_grad:
            return cp.checkpoint(_inner_forward, x, use_reentrant=False)
        return _inner_forward(x)


def drop_path_scales(x: Tensor, drop_prob: float) -> Tensor:
    """Stochastic depth's per-sample scales for a block's two residual
    branches, one draw: ``(2, B, 1, 1, 1)``, each 0 (dropped, with
    probability ``drop_prob``) or ``1 / (1 - drop_prob)``, in ``x``'s
    dtype; ``x + y * scales[i]`` is ``x + DropPath(drop_prob)(y)``."""
    keep = 1. - drop_prob
    scales = x.new_empty((2, x.shape[0]) + (1, ) * (x.ndim - 1))
    return scales.bernoulli_(keep).div_(keep)


class SMLPStage(Sequential):
    """A stage's :class:`SMLPBlock` s, in sequence. At an input size other
    than the one the sMLP weights are for, their mixing maps are resampled
    together (:meth:`SparseMLP.resample_together`: one interpolation per
    stage and axis, not one per block, the same values), as an eager
    training step is bound by the host issuing ops and Mask R-CNN trains at
    sizes that resample."""

    def forward(self, x: Tensor) -> Tensor:
        _, H, W, _ = x.shape
        maps = SparseMLP.resample_together([b.smlp for b in self], H, W)
        for block, block_maps in zip(self, maps):
            x = block(x, block_maps)
        return x


class Downsample(nn.Conv2d):
    """Non-overlapping patch conv (no bias, no norm), as in the official code.

    Inputs whose size is not a multiple of the stride are zero-padded at the
    bottom and right first (mmcv's ``AdaptivePadding(padding='corner')``
    behaviour), so a stage output has ``ceil(H / stride)`` rows. An export
    (:func:`..utils.fast_paths.is_exporting`) always pads, by the amount its
    symbolic size needs (zero at multiples of the stride), so the graph is
    right at every input size.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__(
            in_channels, out_channels, stride, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        s = self.stride[0]
        h, w = x.shape[-2:]
        # ceil(h / s) * s - h: the form torch.export reasons about best
        # (the output has ceil(h / s) rows)
        pad_h, pad_w = (h + s - 1) // s * s - h, (w + s - 1) // s * s - w
        if is_exporting() or pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return super().forward(x)


class SMLPNet(BaseBackbone):
    """sMLPNet backbone.

    A 4-stage attention-free network: each stage is a downsampling patch conv
    followed by :class:`SMLPBlock` s. Parameters and outputs equal those of
    the official implementation (microsoft/SPACH ``models/smlp.py``) once its
    weights are converted with ``tools/model_converters/spach2mmsmlp.py``.

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'base'`` (or ``'t'``,
            ``'s'``, ``'b'``), or a dict with keys ``embed_dims`` (channels of
            stage 0; stage i has ``embed_dims * 2**i``), ``depths`` (blocks
            per stage) and ``mlp_ratio``. Defaults to ``'tiny'``.
        img_size (int | tuple): Input size the sMLP weights are defined for.
            Any other input size works: the weights are resampled on the fly.
            Defaults to 224.
        in_channels (int): Input channels. Defaults to 3.
        patch_size (int): Stride of the stem. Defaults to 4.
        out_indices (int | Sequence[int]): Stages whose outputs are returned
            (strides 4, 8, 16, 32), each after its own BatchNorm (``norm{i}``;
            ``norm3`` is the official final BatchNorm). Defaults to ``(3, )``.
        frozen_stages (int): The first ``frozen_stages`` stages (their
            downsampling conv, blocks and output norm) are frozen: no
            gradient, norms in eval mode. Defaults to 0.
        norm_eval (bool): Keep all BatchNorms in eval mode (frozen running
            statistics) while training. Defaults to False.
        norm_cfg (dict): Config of the BatchNorm layers (e.g. ``SyncBN``).
        drop_path_rate (float): Stochastic depth rate, increasing linearly
            over the blocks from 0. Defaults to 0.
        with_cp (bool): Gradient checkpointing per block. Defaults to False.
        pretrained (str, optional): mmseg's and mmdet's older way to name
            the ImageNet checkpoint (their segmentors set it from the
            model-level ``pretrained`` key): a checkpoint of an
            ``ImageClassifier`` (``configs/smlpnet``, or official weights
            converted by ``tools/model_converters/spach2mmsmlp.py``), loaded
            with ``init_cfg=dict(type='Pretrained', checkpoint=pretrained,
            prefix='backbone.')``. Deprecated there, and so here: prefer
            ``init_cfg``. Defaults to None.
        init_cfg (dict | list[dict], optional): Initialization config. The
            default is PyTorch's, as in the official code.
    """
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], {
            'embed_dims': 80, 'depths': [2, 8, 14, 2], 'mlp_ratio': 3}),
        **dict.fromkeys(['s', 'small'], {
            'embed_dims': 96, 'depths': [2, 10, 24, 2], 'mlp_ratio': 3}),
        **dict.fromkeys(['b', 'base'], {
            'embed_dims': 112, 'depths': [2, 10, 24, 2], 'mlp_ratio': 3}),
    }  # yapf: disable
    arch_keys = ('embed_dims', 'depths', 'mlp_ratio')
    num_stages = 4

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 img_size: Union[int, Sequence[int]] = 224,
                 in_channels: int = 3,
                 patch_size: int = 4,
                 out_indices: Union[int, Sequence[int]] = (3, ),
                 frozen_stages: int = 0,
                 norm_eval: bool = False,
                 norm_cfg: dict = dict(type='BN'),
                 drop_path_rate: float = 0.,
                 with_cp: bool = False,
                 pretrained: Optional[str] = None,
                 init_cfg=None):
        if pretrained is not None:
            if not isinstance(pretrained, str):
                raise TypeError('pretrained must be a checkpoint path (str) '
                                f'or None, got {type(pretrained)}')
            if init_cfg is not None:
                raise ValueError(
                    f'SMLPNet got both pretrained={pretrained!r} and '
                    f'init_cfg={init_cfg}: set only one (init_cfg=dict('
                    "type='Pretrained', checkpoint=..., prefix='backbone.'))")
            warnings.warn(
                'SMLPNet: `pretrained` is deprecated, use `init_cfg=dict('
                f"type='Pretrained', checkpoint={pretrained!r}, "
                "prefix='backbone.')` instead")
            init_cfg = dict(
                type='Pretrained', checkpoint=pretrained, prefix='backbone.')
        super().__init__(init_cfg=init_cfg)
        arch = self.parse_arch(arch)
        self.embed_dims = arch['embed_dims']
        self.depths = list(arch['depths'])
        self.mlp_ratio = arch['mlp_ratio']
        self.channels = [self.embed_dims * 2**i for i in range(4)]
        self.img_size = to_2tuple(img_size)
        self.out_indices = self.parse_out_indices(out_indices)
        if not 0 <= frozen_stages <= self.num_stages:
            raise ValueError(f'frozen_stages must be in [0, {self.num_stages}]'
                             f', got {frozen_stages}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        last_stride = patch_size * 2**(self.num_stages - 1)
        for size in self.img_size:
            if not isinstance(size, int) or size <= 0 or size % last_stride:
                raise ValueError(
                    f'img_size {img_size} must be a positive multiple of '
                    f'{last_stride} (the last stage\'s stride: {last_stride}'
                    f', {2 * last_stride}, ...), an int or (height, width)')

        # Stochastic depth grows linearly from 0 over all blocks.
        num_blocks = sum(self.depths)
        dpr = [drop_path_rate * i / max(num_blocks - 1, 1)
               for i in range(num_blocks)]

        self.downsample_layers = ModuleList()
        self.stages = ModuleList()
        for i, (depth, channels) in enumerate(zip(self.depths, self.channels)):
            if i == 0:
                self.downsample_layers.append(
                    Downsample(in_channels, channels, patch_size))
            else:
                self.downsample_layers.append(
                    Downsample(self.channels[i - 1], channels, 2))
            stride = patch_size * 2**i
            resolution = (self.img_size[0] // stride,
                          self.img_size[1] // stride)
            self.stages.append(SMLPStage(*[
                SMLPBlock(channels, resolution, self.mlp_ratio,
                          dpr.pop(0), norm_cfg, with_cp)
                for _ in range(depth)
            ]))
            if i in self.out_indices:
                self.add_module(f'norm{i}',
                                build_norm_layer(norm_cfg, channels)[1])
        self._freeze_stages()

    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        if isinstance(arch, str):
            if arch.lower() not in cls.arch_zoo:
                raise KeyError(
                    f'Unknown sMLPNet arch {arch!r}; choose one of '
                    f'{sorted(cls.arch_zoo)} or pass a dict with keys '
                    f'{list(cls.arch_keys)}.')
            return cls.arch_zoo[arch.lower()]
        if not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or dict, got {type(arch)}')
        missing = [k for k in cls.arch_keys if k not in arch]
        if missing:
            raise KeyError(f'The sMLPNet arch dict {arch} misses the keys '
                           f'{missing} (needs {list(cls.arch_keys)}).')
        if len(arch['depths']) != cls.num_stages:
            raise ValueError(f'arch["depths"] must have {cls.num_stages} '
                             f'entries, got {arch["depths"]}')
        return arch

    def parse_out_indices(self, out_indices) -> tuple:
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        parsed = []
        for index in out_indices:
            if not -self.num_stages <= index < self.num_stages:
                raise ValueError(f'Invalid out_indices {index}: sMLPNet has '
                                 f'{self.num_stages} stages')
            parsed.append(index % self.num_stages)
        return tuple(sorted(set(parsed)))

    def forward(self, x: Tensor) -> tuple:
        outs = []
        for i, stage in enumerate(self.stages):
            x = self.downsample_layers[i](x)
            x = stage(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x))
        return tuple(outs)

    def _freeze_stages(self):
        for i in range(self.frozen_stages):
            modules = [self.downsample_layers[i], self.stages[i]]
            if i in self.out_indices:
                modules.append(getattr(self, f'norm{i}'))
            for m in modules:
                m.eval()
            for param in chain(*(m.parameters() for m in modules)):
                param.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

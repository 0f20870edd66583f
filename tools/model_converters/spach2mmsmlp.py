# Copyright (c) mmsmlp contributors. All rights reserved.
"""Convert an official sMLPNet checkpoint (microsoft/SPACH) to mmsmlp.

    python tools/model_converters/spach2mmsmlp.py smlp_s.pth smlpnet-s_in1k.pth

The source is ``{'model': state_dict, ...}`` (optionally with ``model_ema``)
or a bare state dict, with blocks numbered across all stages. The
architecture (embed_dims, depths, mlp_ratio, trained input size, classes) is
read from the tensor shapes. The result loads with ``strict=True`` into
``ImageClassifier(SMLPNet(arch, img_size), GlobalAveragePooling,
LinearClsHead)``, the model of ``configs/smlpnet``.
"""
import argparse
import os
import os.path as osp
import pickle
import re
from collections import OrderedDict

import torch

from mmsmlp.compat import load_checkpoint_file

# official block sub-key -> mmsmlp block sub-key (conv weights squeezed)
BLOCK_KEYS = {
    'token_mix.0.conv_merge.BN': 'norm1',
    'token_mix.0.conv_merge.Conv': 'dwconv',
    'token_mix.1.BN': 'norm2',
    # The official `proj_h` mixes along the width, `proh_w` along the height.
    'token_mix.1.proj_h': 'smlp.mix_w',
    'token_mix.1.proh_w': 'smlp.mix_h',
    'token_mix.1.fuse': 'smlp.fuse',
    'channel_mix.1': 'norm3',
    'channel_mix.2.net.0': 'ffn.fc1',
    'channel_mix.2.net.3': 'ffn.fc2',
}
BLOCK_RE = re.compile(r'^(token_mix|channel_mix)\.(\d+)\.(.+)\.([^.]+)$')
STEM_RE = re.compile(r'^to_patch_embedding\.(\d+)\.0\.weight$')


class ConversionError(ValueError):
    pass


def infer_arch(state_dict: dict) -> dict:
    """Read the architecture from the official tensors' shapes."""

    def get(key):
        if key not in state_dict:
            raise ConversionError(
                f'key {key!r} is missing: not an official sMLPNet checkpoint')
        return state_dict[key]

    stem = get('to_patch_embedding.0.0.weight')
    embed_dims, in_channels, patch_size = stem.shape[0], stem.shape[1], \
        stem.shape[-1]
    num_stages = sum(1 for k in state_dict if STEM_RE.match(k))
    blocks = sorted({int(m.group(2)) for k in state_dict
                     if (m := BLOCK_RE.match(k)) and m.group(1) == 'token_mix'})
    if blocks != list(range(len(blocks))) or not blocks:
        raise ConversionError(f'token_mix blocks are not numbered 0..N-1: '
                              f'{blocks}')
    stage_channels = [embed_dims * 2**i for i in range(num_stages)]
    depths = [0] * num_stages
    for b in blocks:
        channels = get(f'token_mix.{b}.1.fuse.weight').shape[0]
        if channels not in stage_channels:
            raise ConversionError(
                f'token_mix.{b}.1.fuse.weight has {channels} output channels'
                f', not one of the stage widths {stage_channels}')
        depths[stage_channels.index(channels)] += 1
    hidden = get('channel_mix.0.2.net.0.weight').shape[0]
    n = get('token_mix.0.1.proj_h.weight').shape[0]
    head = get('mlp_head.0.weight')
    return dict(
        arch=dict(embed_dims=int(embed_dims), depths=depths,
                  mlp_ratio=hidden / embed_dims if hidden % embed_dims
                  else hidden // embed_dims),
        img_size=int(n * patch_size),
        patch_size=int(patch_size),
        in_channels=int(in_channels),
        num_classes=int(head.shape[0]))


def convert(state_dict: dict) -> 'OrderedDict[str, torch.Tensor]':
    """Map official keys to mmsmlp keys (``backbone.``/``head.`` prefixes)."""
    info = infer_arch(state_dict)
    depths = info['arch']['depths']
    # global block index -> (stage, block in stage)
    position = [(s, j) for s, d in enumerate(depths) for j in range(d)]
    last = len(depths) - 1
    converted = OrderedDict()
    for key, value in state_dict.items():
        if m := STEM_RE.match(key):
            new_key = f'backbone.downsample_layers.{m.group(1)}.weight'
        elif m := BLOCK_RE.match(key):
            kind, b, sub, param = m.groups()
            mapped = BLOCK_KEYS.get(f'{kind}.{sub}')
            if mapped is None:
                raise ConversionError(f'cannot map key {key!r}')
            stage, j = position[int(b)]
            new_key = f'backbone.stages.{stage}.{j}.{mapped}.{param}'
            if value.dim() == 4 and mapped != 'dwconv':
                value = value.flatten(1)  # 1x1 convs -> linear weights
        elif key.startswith('batch_norm.'):
            new_key = f'backbone.norm{last}.' + key[len('batch_norm.'):]
        elif key.startswith('mlp_head.0.'):
            new_key = 'head.fc.' + key[len('mlp_head.0.'):]
        else:
            raise ConversionError(f'cannot map key {key!r}')
        converted[new_key] = value
    return converted


def load_official(path: str, use_ema: bool = False,
                  trust: bool = False) -> dict:
    # Weights-only: tensors and plain data. The official training script
    # (DeiT's) may also save its arguments, an argparse.Namespace: a data
    # class, allowed too. Anything else needs --trust-checkpoint.
    checkpoint = load_checkpoint_file(
        path, trust=trust, extra_globals=[argparse.Namespace])
    if not isinstance(checkpoint, dict):
        raise ConversionError(f'{path} holds a {type(checkpoint)}, not a '
                              'state dict')
    if use_ema:
        if 'model_ema' not in checkpoint:
            raise ConversionError(f'--ema given, but {path} has no '
                                  '"model_ema" entry')
        return checkpoint['model_ema']
    return checkpoint.get('model', checkpoint)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='official checkpoint (smlp_s.pth, ...)')
    parser.add_argument('dst', help='output mmsmlp checkpoint')
    parser.add_argument(
        '--ema',
        action='store_true',
        help='convert the EMA weights ("model_ema") instead of "model"')
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='load SRC with full pickle (it can run code): only for a file '
        'you trust that weights-only loading refuses')
    args = parser.parse_args()

    try:
        state_dict = load_official(args.src, args.ema, args.trust_checkpoint)
    except (ValueError, OSError, pickle.UnpicklingError) as e:
        raise SystemExit(str(e))
    try:
        info = infer_arch(state_dict)
        converted = convert(state_dict)
    except ConversionError as e:
        raise SystemExit(f'{args.src}: {e}')
    print(f'Found sMLPNet {info["arch"]}, trained at '
          f'{info["img_size"]}x{info["img_size"]}, patch '
          f'{info["patch_size"]}, {info["num_classes"]} classes '
          f'({len(converted)} tensors)')
    print('Model: backbone=dict(type="SMLPNet", arch=%s, img_size=%d), '
          'head=dict(num_classes=%d, in_channels=%d)' %
          (info['arch'], info['img_size'], info['num_classes'],
           info['arch']['embed_dims'] * 2**(len(info['arch']['depths']) - 1)))
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save({'state_dict': converted, 'meta': {'sMLPNet': info}},
               args.dst)
    print(f'Saved {args.dst}')


if __name__ == '__main__':
    main()

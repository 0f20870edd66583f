# Copyright (c) mmsmlp contributors. All rights reserved.
r"""Backbone FLOPs at the input sizes of the dense tasks, against their
Swin-T and ConvNeXt-T backbones (CPU, no weights needed).

    python tools/analysis_tools/backbone_flops.py
    python tools/analysis_tools/backbone_flops.py --models smlpnet-t swin-t \
        --shapes 224x224 800x1344

Counted by mmengine's FlopAnalyzer (one multiply-add is one FLOP, as the
papers count: sMLPNet-T 5.0G, Swin-T 4.5G at 224x224), batch 1, eval mode.
Swin-T is mmdet's ``SwinTransformer`` as the Mask R-CNN config builds it
(it pads to its 7x7 windows), ConvNeXt-T mmpretrain's. The token mixing of
sMLPNet grows with the side length (each axial mix costs ``H`` or ``W``
multiply-adds per element), Swin-T's windows and ConvNeXt-T's 7x7 convs
with the number of tokens only, so the ratio grows with the input size.
"""
import argparse

import torch
from mmengine.analysis import FlopAnalyzer

from mmsmlp.models.backbones import SMLPNet

SMLPNETS = {'smlpnet-t': 'tiny', 'smlpnet-s': 'small', 'smlpnet-b': 'base'}
PEERS = ('swin-t', 'convnext-t')


def build(name: str) -> torch.nn.Module:
    if name in SMLPNETS:
        model = SMLPNet(arch=SMLPNETS[name], out_indices=(0, 1, 2, 3))
    elif name == 'swin-t':
        from mmdet.models.backbones import SwinTransformer
        model = SwinTransformer(
            embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24],
            window_size=7, out_indices=(0, 1, 2, 3))
    elif name == 'convnext-t':
        from mmpretrain.models.backbones import ConvNeXt
        model = ConvNeXt(arch='tiny', out_indices=(0, 1, 2, 3),
                         gap_before_final_norm=False)
    else:
        raise KeyError(f'unknown model {name!r}; choose from '
                       f'{list(SMLPNETS) + list(PEERS)}')
    model.eval()  # some backbones' train() returns None: not chained
    return model


def gflops(model: torch.nn.Module, shape) -> float:
    """GFLOPs (multiply-adds) of ``model`` on one ``(H, W)`` image."""
    analyzer = FlopAnalyzer(model, (torch.randn(1, 3, *shape), ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    with torch.no_grad():
        return analyzer.total() / 1e9


def parse_shape(text: str):
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'--shapes takes HxW, e.g. 800x1344, got {text!r}') from None
    return h, w


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--models', nargs='+', default=['smlpnet-t', 'swin-t', 'convnext-t'],
        choices=list(SMLPNETS) + list(PEERS))
    parser.add_argument(
        '--shapes', nargs='+', type=parse_shape,
        default=[(224, 224), (512, 512), (800, 1344)],
        help='input sizes HxW (800x1344: Mask R-CNN 1x\'s usual padded '
        'batch; 512x512: UperNet\'s crops)')
    args = parser.parse_args(argv)
    models = {name: build(name) for name in args.models}
    table = {(name, shape): gflops(model, shape)
             for name, model in models.items() for shape in args.shapes}
    base = args.models[0]
    print('| backbone | ' + ' | '.join(f'{h}x{w}'
                                         for h, w in args.shapes) + ' |')
    print('|---' * (len(args.shapes) + 1) + '|')
    for name in args.models:
        cells = []
        for shape in args.shapes:
            value = table[name, shape]
            ratio = table[base, shape] / value
            cells.append(f'{value:.2f}' if name == base else
                         f'{value:.2f} ({base} {ratio:.2f}x)')
        print(f'| {name} | ' + ' | '.join(cells) + ' |')
    return table


if __name__ == '__main__':
    main()

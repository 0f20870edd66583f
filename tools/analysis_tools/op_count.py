# Copyright (c) mmsmlp contributors. All rights reserved.
"""Count the ATen ops of one training step's forward and backward, on CPU.

    python tools/analysis_tools/op_count.py smlpnet-t reference-t convnext-t
    python tools/analysis_tools/op_count.py smlpnet-t swin-t --infer \
        --size 512 683 --batch 1   # one inference forward (UperNet's whole)

An eager training step of sMLPNet is bound by the host issuing ops, not by
the GPU's kernels (see docs/benchmarks.md), so the number of ops the host
dispatches per step is a figure to compare. Models and names as in
``benchmark.py``; bf16 autocast, batch 2, gradients cleared before the step
(as in the benchmark), so no gradient accumulation is counted. Views count
as ops: each is a dispatch. Counted on CPU, where mmsmlp's Triton kernels
do not run and PyTorch's ops take their place.

``--infer``: one eval-mode forward without autograd in fp32 instead (as
mmseg and mmdet evaluate: batch 1, the image's own size), the host's
work per image of an evaluation.

``--backbone-of CONFIG``: the backbone of a detection or segmentation
config as it trains (frozen BatchNorm statistics, every stage's output; the
loss is the sum of the outputs' means) at ``--size H W``, e.g. Mask R-CNN's
eager step::

    python tools/analysis_tools/op_count.py --size 256 320 \
        --backbone-of configs/mask_rcnn/mask-rcnn_smlpnet-t_fpn_1x_coco.py
"""
import argparse
import collections
import os.path as osp
import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from benchmark import build, build_backbone, step_loss  # noqa: E402


class OpCounter(TorchDispatchMode):
    """Counts every ATen op dispatched while it is active, by name."""

    def __init__(self):
        super().__init__()
        self.counts = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def count_step(model, size, batch: int):
    """(forward counts, backward counts) of one training step at ``size``
    (``H`` or ``(H, W)``): a classifier's cross-entropy, or a backbone's
    (a tuple of outputs) sum of the outputs' means."""
    x = torch.randn(batch, 3, *((size, size) if isinstance(size, int) else
                                size))
    y = torch.randint(0, 1000, (batch, ))

    def forward():
        with torch.autocast('cpu', dtype=torch.bfloat16):
            return step_loss(model(x), y)

    forward().backward()  # first-call work (caches, lazy init) not counted
    model.zero_grad(set_to_none=True)
    with OpCounter() as fwd:
        loss = forward()
    with OpCounter() as bwd:
        loss.backward()
    return fwd.counts, bwd.counts


def count_inference(model, size, batch: int):
    """Counts of one eval-mode forward without autograd, fp32."""
    x = torch.randn(batch, 3, *size)
    with torch.no_grad():
        model(x)  # first-call work not counted
        with OpCounter() as counter:
            model(x)
    return counter.counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('models', nargs='*')
    parser.add_argument('--backbone-of', metavar='CONFIG',
                        help="count the training step of a config's "
                        'model.backbone')
    parser.add_argument('--size', type=int, nargs='+', default=[224],
                        help='H [W] (default 224)')
    parser.add_argument('--infer', action='store_true',
                        help='one inference forward instead of a step')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--top', type=int, default=8,
                        help='most frequent ops printed per model')
    args = parser.parse_args()
    if len(args.size) > 2:
        parser.error(f'--size takes H [W], got {args.size}')
    size = (args.size * 2)[:2]  # H, W
    if not args.models and not args.backbone_of:
        parser.error('give model names or --backbone-of CONFIG')
    if args.backbone_of:
        model = build_backbone(args.backbone_of)
        model.train()  # not chained: mmdet's Swin's train() returns None
        fwd, bwd = count_step(model, size, args.batch)
        print(f'| {args.backbone_of} backbone, {size[0]}x{size[1]}, batch '
              f'{args.batch} | {sum(fwd.values())} forward | '
              f'{sum(bwd.values())} backward | '
              f'{sum(fwd.values()) + sum(bwd.values())} |')
        print(', '.join(f'{op} {n}'
                        for op, n in (fwd + bwd).most_common(args.top)))
        return
    if args.infer:
        print(f'| model | inference ops, batch {args.batch}, '
              f'{size[0]}x{size[1]} |')
        print('|---|---|')
        for name in args.models:
            counts = count_inference(build(name).eval(), size, args.batch)
            print(f'| {name} | {sum(counts.values())} |', flush=True)
            print(f'{name}: ' + ', '.join(
                f'{op} {n}' for op, n in counts.most_common(args.top)))
        return
    if size[0] != size[1]:
        parser.error('a training step is counted at square sizes')
    print('| model | forward ops | backward ops | total |')
    print('|---|---|---|---|')
    tops = {}
    for name in args.models:
        model = build(name).train()
        fwd, bwd = count_step(model, size[0], args.batch)
        total = sum(fwd.values()) + sum(bwd.values())
        print(f'| {name} | {sum(fwd.values())} | {sum(bwd.values())} | '
              f'{total} |', flush=True)
        tops[name] = (fwd + bwd).most_common(args.top)
    for name, top in tops.items():
        print(f'{name}: ' + ', '.join(f'{op} {n}' for op, n in top))


if __name__ == '__main__':
    main()

# Copyright (c) mmsmlp contributors. All rights reserved.
"""GPU kernel time of each part of an sMLPNet block's training step, per
stage: where a step's time goes.

    python tools/analysis_tools/block_profile.py [--arch tiny] [--batch 128]

For one block of each stage (at the stage's resolution, batch 128, bf16
autocast, train mode) it times forward + backward of each part with the
profiler (summed kernel time, so the host's speed does not enter), and
prints it in microseconds and in "copies": the time over that of one copy
of the block's input (read + write of B x H x W x C bf16 values), a unit
that tells how many passes over the activation a part costs. The last
column multiplies by the stage's depth: a training step's share.
``--graph-forms`` profiles the parts as a CUDA graph capture runs them,
what the configs train with (``fast_paths.graph_capture``: mmsmlp's Triton
training kernels and the autograd nodes' pass-saving forms), eagerly;
``MMSMLP_FAST_PATHS=triton-train`` the Triton kernels with the eager
nodes, ``=plain`` the plain formulas (the default: the eager training
forms, PyTorch's ops and the hand-written autograd nodes).
"""
import argparse

import mmsmlp  # noqa: F401,I001  isort:skip
import torch
from torch.profiler import ProfilerActivity, profile

from mmsmlp.models import SMLPNet
from mmsmlp.models.utils.fast_paths import graph_capture
from mmsmlp.models.utils.norm_act import batch_norm_gelu, conv_batch_norm_gelu


def kernel_us(fn, iters=10, warmup=3):
    """Summed CUDA kernel time of one ``fn()`` call, in microseconds, and
    its kernels' names with their time."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if e.self_device_time_total > 0]
    events.sort(key=lambda e: -e.self_device_time_total)
    total = sum(e.self_device_time_total for e in events) / iters
    top = [(e.key, e.self_device_time_total / iters, e.count // iters)
           for e in events]
    return total, top


def parts(block):
    """The parts of a block, each ``x -> y`` on ``(B, H, W, C)``."""
    return {
        'bn+gelu': lambda x: batch_norm_gelu(block.norm1, x),
        'dwconv+bn+gelu':
        lambda x: conv_batch_norm_gelu(block.dwconv, block.norm2, x),
        'smlp': block.smlp,
        'layernorm': block.norm3,
        'channel mlp': block.ffn,
        'residual add': lambda x: x + x,
        'block': block,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='tiny')
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--kernels', type=int, default=3,
                        help='top kernels printed per part')
    parser.add_argument('--compile', action='store_true',
                        help='each part through torch.compile')
    parser.add_argument('--graph-forms', action='store_true',
                        help='the forms a CUDA graph capture runs (run '
                        'eagerly): what the configs train with')
    args = parser.parse_args()
    if args.graph_forms:
        graph_capture().__enter__()  # for the rest of the process
    torch.backends.cudnn.benchmark = True
    model = SMLPNet(arch=args.arch, img_size=args.size).cuda().train()
    print(f'{torch.cuda.get_device_name()}, torch {torch.__version__}, '
          f'sMLPNet-{args.arch}, batch {args.batch}, bf16 autocast, one '
          'block per stage, forward + backward kernel time'
          + (', compiled parts' if args.compile else '')
          + (', the forms of a CUDA graph capture' if args.graph_forms
             else ''))
    print('| stage | part | us per block | copies | x depth = ms per step |')
    print('|---|---|---|---|---|')
    step_total = 0.
    for i, stage in enumerate(model.stages):
        block = stage[0]
        size = args.size // (4 * 2**i)
        x = torch.randn(args.batch, size, size, model.channels[i],
                        device='cuda', dtype=torch.bfloat16,
                        requires_grad=True)
        copy_us, _ = kernel_us(lambda: x.detach().clone())
        for name, part in parts(block).items():
            if args.compile:
                part = torch.compile(part)

            def step():
                with torch.autocast('cuda', dtype=torch.bfloat16):
                    y = part(x)
                y.backward(torch.ones_like(y))
                x.grad = None
                block.zero_grad(set_to_none=True)

            us, top = kernel_us(step)
            ms_step = us * len(stage) / 1e3
            if name == 'block':
                step_total += ms_step
            print(f'| {i} ({size}x{size}x{model.channels[i]}) | {name} | '
                  f'{us:.0f} | {us / copy_us:.1f} | {ms_step:.2f} |')
            for key, t, count in top[:args.kernels]:
                print(f'|   |   {key[:90]} x{count} | {t:.0f} | '
                      f'{t / copy_us:.1f} | |')
    print(f'blocks of all stages: {step_total:.1f} ms of kernels per step')


if __name__ == '__main__':
    main()

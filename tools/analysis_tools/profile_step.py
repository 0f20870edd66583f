# Copyright (c) mmsmlp contributors. All rights reserved.
"""Which CUDA kernels take the time of a training step (or inference).

    python tools/analysis_tools/profile_step.py smlpnet-t [--infer] \
        [--compile | --cuda-graph] [--rows 20]
    python tools/analysis_tools/profile_step.py \
        --backbone-of configs/mask_rcnn/mask-rcnn_smlpnet-t_fpn_1x_coco.py \
        --size 800 1344 --batch 2

Same models and settings as ``benchmark.py`` (bf16 autocast, channels_last).
``--backbone-of CONFIG`` profiles the backbone of a detection or
segmentation config instead, as those configs train it (their
``model.backbone``: frozen BatchNorm statistics, every stage's output; fp16
autocast as ``--amp``; the loss is the sum of the outputs' means), on
``--size H W`` inputs.
``--cuda-graph`` trains the model through CUDA graphs, as the configs'
``CUDAGraphHook`` does.
Prints the wall time of a step and the summed time of its kernels: when the
wall time is larger, the host (Python, autograd, kernel launches) bounds it;
``--host`` then lists the host-side ops that take its time. Then the kernels'
time by kind (matmuls, convolutions, Triton kernels: inductor's fused ones
and mmsmlp's, PyTorch's own) and the kernels taking the most.
``--copies`` lists where PyTorch's copies (``aten::copy_``) come from: the
ops around each (e.g. ``aten::clone < aten::bmm < ## Call CompiledFxGraph
...``, a batched matmul copying an operand cuBLAS cannot take) and its
shapes, per step.
"""
import argparse
import collections
import time

import mmsmlp  # noqa: F401,I001  isort:skip
import torch
from torch.profiler import ProfilerActivity, profile

# tools/analysis_tools/benchmark.py
from benchmark import build, build_backbone, step_loss  # noqa: I100

from mmsmlp.models.utils.cuda_graph import GraphedTraining

# (kind, substrings of a kernel's name), the first match wins
KERNEL_KINDS = (
    ('inductor reductions', ('triton_red', 'triton_per')),
    ('inductor pointwise', ('triton_poi', )),
    ('matmuls', ('gemm', 'nvjet', 'cutlass', 'xmma', 'cublas', 'splitk')),
    ('convolutions', ('conv', 'cudnn', 'dgrad', 'wgrad')),
    ('copies, casts and fills', ('memcpy', 'memset', 'copy_kernel')),
    ('mmsmlp Triton kernels', ('_fwd', '_bwd', '_bn_stats')),
)


def kernel_kind(name: str) -> str:
    name = name.lower()
    for kind, keys in KERNEL_KINDS:
        if any(k in name for k in keys):
            return kind
    return 'PyTorch elementwise and reductions'


def copy_origins(events, steps: int, depth: int = 4):
    """``(copies per step, the ops around one, its input shapes)`` for the
    ``aten::copy_`` events of a profile of ``steps`` steps (profiled with
    the CPU activity and ``record_shapes``), most frequent first. The ops
    around a copy are its enclosing ops, innermost first, up to
    ``depth``."""
    origins = collections.Counter()
    for event in events:
        if event.name != 'aten::copy_':
            continue
        chain, parent = [], event.cpu_parent
        while parent is not None and len(chain) < depth:
            chain.append(parent.name)
            parent = parent.cpu_parent
        origins[' < '.join(chain) or '(top level)',
                str(event.input_shapes)] += 1
    return [(n / steps, chain, shapes)
            for (chain, shapes), n in origins.most_common()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('model', nargs='?',
                        help='a model name of benchmark.py')
    parser.add_argument('--backbone-of', metavar='CONFIG',
                        help="a config whose model.backbone to profile")
    parser.add_argument('--size', type=int, nargs=2, default=(224, 224),
                        metavar=('H', 'W'))
    parser.add_argument('--infer', action='store_true')
    parser.add_argument('--compile', action='store_true')
    parser.add_argument('--cuda-graph', action='store_true',
                        help='train through CUDA graphs (CUDAGraphHook)')
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--rows', type=int, default=20)
    parser.add_argument('--host', action='store_true',
                        help='also the host-side ops taking the most time')
    parser.add_argument('--copies', action='store_true',
                        help="where PyTorch's copies come from")
    args = parser.parse_args()
    if (args.model is None) == (args.backbone_of is None):
        parser.error('give a model name or --backbone-of CONFIG')
    if args.cuda_graph and (args.compile or args.infer):
        parser.error('--cuda-graph graphs a training step: not with '
                     '--compile or --infer')
    if args.backbone_of:
        model, dtype = build_backbone(args.backbone_of), torch.float16
        args.model = f'{args.backbone_of} backbone'
    else:
        model, dtype = build(args.model), torch.bfloat16
    model = model.cuda().to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, 3, *args.size, device='cuda').to(
        memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch, ), device='cuda')
    optimizer = torch.optim.AdamW(model.parameters())
    model.train(not args.infer)
    fn = torch.compile(model) if args.compile else model
    if args.cuda_graph:
        GraphedTraining.wrap(model)

    def step():
        with torch.autocast('cuda', dtype=dtype):
            if args.infer:
                with torch.no_grad():
                    return fn(x)
            loss = step_loss(fn(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    torch.backends.cudnn.benchmark = True
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(10):
        step()
    torch.cuda.synchronize()
    wall = (time.perf_counter() - start) / 10 * 1e3
    activities = [ProfilerActivity.CUDA]
    if args.host or args.copies:
        activities.append(ProfilerActivity.CPU)
    with profile(activities=activities, record_shapes=args.copies) as prof:
        for _ in range(5):
            step()
        torch.cuda.synchronize()
    events = prof.key_averages()
    # Kernels' own rows: with host events profiled too, an op's row also
    # carries its kernels' time; a user annotation's GPU range (the
    # optimizer's step) spans kernels counted already.
    rows = [e for e in events
            if e.device_type == torch.autograd.DeviceType.CUDA
            and not getattr(e, 'is_user_annotation', False)]
    kernels = sum(e.self_device_time_total for e in rows) / 5 / 1e3
    launches = sum(e.count for e in rows) / 5
    print(f'{args.model}, batch {args.batch}, {args.size[0]}x{args.size[1]}: '
          f'{wall:.1f} ms per step (wall), {kernels:.1f} ms of kernels per '
          f'step ({launches:.0f} kernels)')
    kinds = collections.defaultdict(lambda: [0., 0.])
    for e in rows:
        kind = kinds[kernel_kind(e.key)]
        kind[0] += e.self_device_time_total / 5 / 1e3
        kind[1] += e.count / 5
    for kind, (ms, count) in sorted(kinds.items(), key=lambda kv: -kv[1][0]):
        print(f'  {kind:<36}{ms:8.2f} ms {count:6.0f} kernels')
    print(events.table(sort_by='self_device_time_total', row_limit=args.rows,
                       max_name_column_width=70))
    if args.host:
        host = sum(e.self_cpu_time_total for e in events
                   if e.device_type == torch.autograd.DeviceType.CPU) / 5 / 1e3
        print(f'host: {host:.1f} ms of profiled CPU time per step (the '
              'profiler adds its own)')
        print(events.table(sort_by='self_cpu_time_total',
                           row_limit=args.rows, max_name_column_width=70))
    if args.copies:
        print('copies per step | the ops around each | input shapes')
        for n, chain, shapes in copy_origins(prof.events(), 5)[:args.rows]:
            print(f'{n:g} | {chain} | {shapes}')


if __name__ == '__main__':
    main()

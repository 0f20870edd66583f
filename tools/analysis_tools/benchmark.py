# Copyright (c) mmsmlp contributors. All rights reserved.
"""Throughput and peak memory of sMLPNet against its peers, in one process.

    python tools/analysis_tools/benchmark.py                     # eager
    python tools/analysis_tools/benchmark.py --compile           # torch.compile
    python tools/analysis_tools/benchmark.py --compile --compile-mode reduce-overhead
    python tools/analysis_tools/benchmark.py --models smlpnet-t reference-t convnext-t
    python tools/analysis_tools/benchmark.py --models smlpnet-s reference-s smlpnet-b reference-b
    python tools/analysis_tools/benchmark.py --models smlpnet-t smlpnet-t-plain smlpnet-t-notriton smlpnet-t-tritontrain
    python tools/analysis_tools/benchmark.py --cuda-graph --models smlpnet-t timm-convnext-t   # training step as CUDA graphs

A suffix after an sMLPNet's name picks its fast-path mode
(``mmsmlp/models/utils/fast_paths.py``): ``-plain`` the plain formulas
only, ``-notriton`` without mmsmlp's Triton kernels (PyTorch's LayerNorm
and BatchNorm ops, as on a CPU), ``-tritontrain`` with them in training too;
without a suffix, the mode ``MMSMLP_FAST_PATHS`` sets (default: Triton
kernels in inference only).

For each model: inference images/s (eval, no grad) and training images/s (a
step of forward, cross-entropy, backward and AdamW) with the same input size,
dtype (autocast), memory format and batch sizes for all, plus the peak memory
of the training step. Then the ratios to the reference formulation (the
official code's, ``mmsmlp.testing.OfficialSMLPNet``), Swin-T and ConvNeXt-T,
mmpretrain's and timm's. Peers come from mmpretrain's model zoo and, when
timm is importable (it is on the GPU machine), from timm (``timm-convnext-t``,
``timm-swin-t``; architecture only, no weights). timm's are the faster
implementations of the two in training, so the default list includes them
when timm is there.
"""
import argparse
import importlib.util
import time

import mmsmlp  # noqa: F401,I001  isort:skip
import torch
import torch.nn.functional as F
from mmpretrain import get_model
from mmpretrain.registry import MODELS

from mmsmlp.engine.hooks.compile_forward_hook import with_memory_budget
from mmsmlp.models import SMLPNet
from mmsmlp.models.utils.cuda_graph import GraphedTraining
from mmsmlp.models.utils.fast_paths import get_mode, set_mode
from mmsmlp.testing import OfficialSMLPNet

PEERS = {
    'swin-t': 'swin-tiny_16xb64_in1k',
    'convnext-t': 'convnext-tiny_32xb128_in1k',
    'resnet-50': 'resnet50_8xb32_in1k',
    'mixer-b16': 'mlp-mixer-base-p16_3rdparty_64xb64_in1k',
}
# timm's implementations of the same peers: timm.create_model names.
TIMM_PEERS = {
    'timm-convnext-t': 'convnext_tiny',
    'timm-swin-t': 'swin_tiny_patch4_window7_224',
}
HAS_TIMM = importlib.util.find_spec('timm') is not None
SMLPNETS = {'smlpnet-t': 'tiny', 'smlpnet-s': 'small', 'smlpnet-b': 'base'}
# the official formulation at each size (SPACH's smlp_t / smlp_s / smlp_b)
REFERENCES = {
    'reference-t': dict(dim=80, depths=[2, 8, 14, 2]),
    'reference-s': dict(dim=96, depths=[2, 10, 24, 2]),
    'reference-b': dict(dim=112, depths=[2, 10, 24, 2]),
}
# Name suffix -> fast-path mode.
MODE_SUFFIXES = {'-plain': 'plain', '-notriton': 'no-triton',
                 '-tritontrain': 'triton-train'}
ENV_MODE = get_mode()
DEFAULT_MODELS = ['smlpnet-t', 'smlpnet-s', 'smlpnet-b', 'reference-t',
                  'swin-t', 'convnext-t', 'resnet-50', 'mixer-b16'
                  ] + (list(TIMM_PEERS) if HAS_TIMM else [])
# the columns of ratios, when measured
RATIO_PEERS = ('reference-t', 'swin-t', 'convnext-t', 'timm-swin-t',
               'timm-convnext-t')


class Logits(torch.nn.Module):
    """mmpretrain classifiers' logits as a plain ``forward(x)``."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, x):
        return self.classifier(x, mode='tensor')


def fast_path_mode(name: str):
    """The model's name without a mode suffix, and its fast-path mode."""
    for suffix, mode in MODE_SUFFIXES.items():
        if name.endswith(suffix):
            return name.removesuffix(suffix), mode
    return name, ENV_MODE


def build(name: str) -> torch.nn.Module:
    name, _ = fast_path_mode(name)
    if name in SMLPNETS:
        arch = SMLPNETS[name]
        return Logits(MODELS.build(dict(
            type='ImageClassifier',
            backbone=dict(type='SMLPNet', arch=arch),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=1000,
                      in_channels=SMLPNet(arch=arch).channels[-1]))))
    if name in REFERENCES:
        return OfficialSMLPNet(**REFERENCES[name])
    if name in PEERS:
        return Logits(get_model(PEERS[name]))
    if name in TIMM_PEERS:
        if not HAS_TIMM:
            raise KeyError(f'{name} needs timm, which is not installed '
                           '(pip install timm)')
        import timm
        return timm.create_model(TIMM_PEERS[name], pretrained=False)
    raise KeyError(f'unknown model {name!r}; choose from '
                   f'{list(SMLPNETS) + list(REFERENCES) + list(PEERS)}'
                   f' + {list(TIMM_PEERS)} (with timm)')


def build_backbone(config: str) -> torch.nn.Module:
    """``model.backbone`` of a config (mmdet's, mmseg's or ours), built in
    its registry scope, without its checkpoint (``init_cfg`` is not run)."""
    from mmengine import registry
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    registry.init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    # the root registry builds in the config's scope (mmdet's, mmseg's)
    return registry.MODELS.build(cfg.model.backbone)


def step_loss(out, y: torch.Tensor) -> torch.Tensor:
    """A training step's loss: a classifier's cross-entropy, or, for a
    backbone (a tuple of stage outputs), the sum of the outputs' means."""
    if isinstance(out, (tuple, list)):
        return sum(o.float().mean() for o in out)
    return F.cross_entropy(out.float(), y)


def timed(fn, iters: int, warmup: int, rounds: int) -> float:
    """Seconds per call, after warm-up, with CUDA synchronisation: the best
    of ``rounds`` rounds of ``iters`` calls (host-bound steps vary from one
    round to the next with the machine's other load)."""
    for _ in range(warmup):
        fn()
    best = float('inf')
    for _ in range(rounds):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
        best = min(best, (time.perf_counter() - start) / iters)
    return best


def bench(name, args):
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16,
             'fp32': torch.float32}[args.dtype]
    memory_format = (torch.channels_last
                     if args.channels_last else torch.contiguous_format)
    model = build(name).cuda().to(memory_format=memory_format)
    set_mode(fast_path_mode(name)[1])
    fn = torch.compile(model, mode=args.compile_mode) if args.compile \
        else model
    if args.memory_budget is not None:  # as CompileForwardHook sets it
        fn = with_memory_budget(fn, args.memory_budget)
    if args.cuda_graph:  # what CUDAGraphHook does to the backbone
        GraphedTraining.wrap(model)
    autocast = torch.autocast('cuda', dtype=dtype,
                              enabled=dtype != torch.float32)
    result = {}

    # inference
    model.eval()
    x = torch.randn(args.batch_infer, 3, args.size, args.size,
                    device='cuda').to(memory_format=memory_format)

    def new_step():
        if args.compile_mode == 'reduce-overhead':  # CUDA graph replays
            torch.compiler.cudagraph_mark_step_begin()

    def infer():
        new_step()
        with torch.no_grad(), autocast:
            fn(x)

    if args.train_only:
        result['infer'] = float('nan')
    else:
        result['infer'] = args.batch_infer / timed(infer, args.iters,
                                                   args.warmup, args.rounds)

    # training step
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(args.batch_train, 3, args.size, args.size,
                    device='cuda').to(memory_format=memory_format)
    y = torch.randint(0, 1000, (args.batch_train, ), device='cuda')

    def train():
        new_step()
        with autocast:
            loss = step_loss(fn(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if args.cuda_graph:
        # the peak of the capture (its eager warm-up steps) and replays:
        # the graphs' private memory is allocated while capturing
        torch.cuda.reset_peak_memory_stats()
    train()  # allocate the optimizer state before measuring memory
    if not args.cuda_graph:
        torch.cuda.reset_peak_memory_stats()
    result['train'] = args.batch_train / timed(train, args.iters,
                                               args.warmup, args.rounds)
    result['mem'] = torch.cuda.max_memory_allocated() / 2**30
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=DEFAULT_MODELS)
    parser.add_argument('--compile', action='store_true')
    parser.add_argument(
        '--compile-mode', choices=['default', 'reduce-overhead',
                                   'max-autotune-no-cudagraphs'],
        help="torch.compile's mode (reduce-overhead: CUDA graphs)")
    parser.add_argument(
        '--memory-budget', type=float,
        help="with --compile: torch's activation_memory_budget (AOTAutograd "
        'recomputes in backward what it can to keep at most this fraction '
        'of the activations it would keep)')
    parser.add_argument(
        '--cuda-graph', action='store_true',
        help='eager, the whole model\'s training forward and backward '
        'replayed as CUDA graphs (GraphedTraining, as CUDAGraphHook does to '
        'the backbone); inference stays eager')
    parser.add_argument('--dtype', choices=['bf16', 'fp16', 'fp32'],
                        default='bf16', help='autocast dtype')
    parser.add_argument('--no-channels-last', dest='channels_last',
                        action='store_false')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--batch-infer', type=int, default=256)
    parser.add_argument('--batch-train', type=int, default=128)
    parser.add_argument('--train-only', action='store_true',
                        help='the training step only (compiles once)')
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--rounds', type=int, default=3,
                        help='timed rounds of --iters; the best is reported')
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit('benchmark.py measures on a CUDA GPU; none found')

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    mode = 'eager'
    if args.compile:
        mode = f'compiled ({args.compile_mode or "default"})'
        if args.memory_budget is not None:
            mode += f', activation_memory_budget={args.memory_budget}'
    elif args.memory_budget is not None:
        raise SystemExit('--memory-budget is for --compile')
    if args.cuda_graph:
        if args.compile:
            raise SystemExit('--cuda-graph is for eager models; with '
                             '--compile, use --compile-mode reduce-overhead')
        mode = 'eager, training step as CUDA graphs'
    print(f'{torch.cuda.get_device_name()}, torch {torch.__version__}, '
          f'{args.dtype} autocast, {mode}, channels_last='
          f'{args.channels_last}, {args.size}x{args.size}, inference batch '
          f'{args.batch_infer}, training batch {args.batch_train} (AdamW)')
    results = {}
    for name in args.models:
        results[name] = bench(name, args)
        torch.cuda.empty_cache()
        r = results[name]
        print(f'  measured {name}: {r["infer"]:.0f} / {r["train"]:.0f} '
              f'img/s, {r["mem"]:.1f} GiB', flush=True)

    peers = [p for p in RATIO_PEERS if p in results]
    header = (f'| model ({mode}) | infer img/s | train img/s | train peak GiB'
              + ''.join(f' | infer / {p} | train / {p}' for p in peers) +
              ' |')
    print(header)
    print('|' + '---|' * (header.count('|') - 1))
    for name, r in results.items():
        row = f'| {name} | {r["infer"]:.0f} | {r["train"]:.0f} | ' \
              f'{r["mem"]:.1f}'
        for p in peers:
            row += f' | {r["infer"] / results[p]["infer"]:.2f}x' \
                   f' | {r["train"] / results[p]["train"]:.2f}x'
        print(row + ' |')


if __name__ == '__main__':
    main()

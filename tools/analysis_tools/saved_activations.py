# Copyright (c) mmsmlp contributors. All rights reserved.
"""Activations a training forward keeps for its backward, eager and
compiled, on CPU.

    python tools/analysis_tools/saved_activations.py smlpnet-t \
        timm-convnext-t --batch 16 --budget 0.99

Training memory at a given batch is mostly these activations. Eagerly,
they are the tensors autograd saves (``saved_tensors_hooks``; mmsmlp's
hand-written nodes save fewer than the plain formulas). Compiled, they are
what AOTAutograd's partitioner, as inductor calls it, hands from the
forward graph to the backward graph: the partition does not depend on the
device, so the figures are those of a GPU's compile too (the kernels are
not compiled here: both graphs run as ATen ops). ``--budget`` adds a
compile with ``activation_memory_budget`` at that value (what
``CompileForwardHook(activation_memory_budget=...)`` sets). Models and
names as in ``benchmark.py``; bf16 autocast, MiB per image, parameters and
the input left out.
"""
import argparse
import functools
import os.path as osp
import sys

import torch
import torch._functorch.config as functorch_config
from torch._dynamo.backends.common import aot_autograd
from torch._functorch.aot_autograd import make_boxed_func
from torch._functorch.partitioners import min_cut_rematerialization_partition

from mmsmlp.engine.hooks.compile_forward_hook import with_memory_budget

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from benchmark import build, step_loss  # noqa: E402


def recording_backend(record: dict):
    """A ``torch.compile`` backend that partitions as inductor does and
    records in ``record`` the bytes of the activations the forward graph
    keeps for the backward (``'kept'``) and the budget it partitioned with
    (``'budget'``); both graphs then run uncompiled (ATen ops)."""

    def forward_compiler(gm, example_inputs):
        output, = [n for n in gm.graph.nodes if n.op == 'output']
        kept = [
            n.meta['val'] for n in output.args[0]
            if isinstance(n, torch.fx.Node) and n.op != 'placeholder'
            and isinstance(n.meta.get('val'), torch.Tensor)
        ]
        # the forward's own output (the logits) is among them: small
        record['kept'] = record.get('kept', 0) + sum(
            t.numel() * t.element_size() for t in kept)
        record['budget'] = functorch_config.activation_memory_budget
        return make_boxed_func(gm)

    return aot_autograd(
        fw_compiler=forward_compiler,
        bw_compiler=lambda gm, example_inputs: make_boxed_func(gm),
        partition_fn=functools.partial(min_cut_rematerialization_partition,
                                       compiler='inductor'),
        # as inductor: BatchNorm's running statistics are updated inside
        # the forward graph, not after it
        keep_inference_input_mutations=True)


def eager_saved(model, x) -> int:
    """Bytes of the distinct storages autograd saves in ``model(x)``,
    parameters left out."""
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            model(x)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in storages.items() if ptr not in params)


def compiled_saved(model, x, y, budget=None) -> int:
    """Bytes the compiled forward keeps for its backward (one step)."""
    torch._dynamo.reset()
    record = {}
    compiled = torch.compile(model, backend=recording_backend(record))
    if budget is not None:  # as CompileForwardHook sets it
        compiled = with_memory_budget(compiled, budget)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = step_loss(compiled(x), y)
    loss.backward()
    return record['kept']


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('models', nargs='+')
    parser.add_argument('--batch', type=int, default=16,
                        help='large enough that small per-step tensors '
                        'do not count per image')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--budget', type=float,
                        help='also compiled with this activation_memory_'
                        'budget')
    args = parser.parse_args()
    mib = 2**20 * args.batch
    columns = ['eager', 'compiled']
    if args.budget is not None:
        columns.append(f'compiled, budget {args.budget}')
    print(f'| model (MiB an image kept for backward, batch {args.batch}) | '
          + ' | '.join(columns) + ' |')
    print('|---' * (len(columns) + 1) + '|')
    for name in args.models:
        torch.manual_seed(0)
        model = build(name).train()
        x = torch.randn(args.batch, 3, args.size, args.size)
        y = torch.randint(0, 1000, (args.batch, ))
        figures = [eager_saved(model, x), compiled_saved(model, x, y)]
        if args.budget is not None:
            figures.append(compiled_saved(model, x, y, args.budget))
        print(f'| {name} | ' + ' | '.join(f'{f / mib:.1f}' for f in figures)
              + ' |', flush=True)


if __name__ == '__main__':
    main()

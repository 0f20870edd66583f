# Copyright (c) mmsmlp contributors. All rights reserved.
"""Run by tests/test_flat_reduce_ddp.py under torch.distributed.run (2 CPU
processes, gloo): trains a small model through mmengine's ``train_step``
under ``MMDistributedDataParallel`` and under ``FlatReduceDDP``, and
writes what each rank ends with to ``rank<r>.pt`` in ``OUT_DIR``.

    python -m torch.distributed.run --nproc_per_node 2 \
        tests/flat_reduce_probe.py OUT_DIR
"""
import sys

import torch
import torch.distributed as dist
import torch.nn.functional as F
from mmengine.model import BaseModel, MMDistributedDataParallel
from mmengine.optim import OptimWrapper
from torch import nn

from mmsmlp.engine import FlatReduceDDP
from mmsmlp.models.utils.cuda_graph import views_of_one_buffer


class Toy(BaseModel):
    """A backbone (one weight channels_last) and a head."""

    def __init__(self, unused=False):
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1))
        conv = self.backbone[2]
        conv.weight.data = conv.weight.data.to(
            memory_format=torch.channels_last)
        if unused:
            self.backbone.spare = nn.Parameter(torch.zeros(3))
        self.head = nn.Linear(8, 4)

    def forward(self, inputs, labels=None, mode='tensor'):
        logits = self.head(self.backbone(inputs).mean((2, 3)))
        if mode == 'loss':
            return dict(loss=F.cross_entropy(logits, labels))
        return logits


def toy(rank, **kwargs):
    torch.manual_seed(0)
    model = Toy(**kwargs)
    if rank:  # the wrappers broadcast rank 0's parameters
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1)
    return model


def build(wrapper, rank, **kwargs):
    return wrapper(module=toy(rank, **kwargs), device_ids=None)


def batch(rank, step):
    g = torch.Generator().manual_seed(100 * step + rank)
    return dict(inputs=torch.randn(2, 3, 6, 6, generator=g),
                labels=torch.randint(0, 4, (2, ), generator=g))


def train(wrapper, rank):
    """Four train_steps, gradients accumulated over two (mmengine's
    no_sync), SGD with momentum: the parameters at the end."""
    model = build(wrapper, rank)
    optim = OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        accumulative_counts=2)
    optim.initialize_count_status(model, 0, 4)
    for step in range(4):
        model.train_step(batch(rank, step), optim)
    return {n: p.detach().clone() for n, p in model.module.named_parameters()}


def grads_into_one_buffer(wrapper, rank):
    """One backward into gradients that are views of one buffer (as a
    replay leaves them): the gradients, and whether that buffer was
    reduced as it is."""
    model = build(wrapper, rank)
    params = list(model.module.backbone.parameters())
    flat, views = views_of_one_buffer(params)
    flat.zero_()
    for p, view in zip(params, views):
        p.grad = view
    model(**batch(rank, 0), mode='loss')['loss'].backward()
    packed = getattr(model, '_packed_flat', None)
    return dict(grads={n: p.grad.clone()
                       for n, p in model.module.named_parameters()},
                reduced_as_is=packed is not None
                and packed.data_ptr() == flat.data_ptr())


def unused_parameter(rank):
    model = build(FlatReduceDDP, rank, unused=True)
    try:
        model(**batch(rank, 0), mode='loss')['loss'].backward()
    except RuntimeError as e:
        return str(e)
    return None


def main(out_dir):
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    result = dict(
        trained={w.__name__: train(w, rank)
                 for w in (MMDistributedDataParallel, FlatReduceDDP)},
        one_buffer={w.__name__: grads_into_one_buffer(w, rank)
                    for w in (MMDistributedDataParallel, FlatReduceDDP)},
        unused=unused_parameter(rank),
        initial=dict(toy(0).named_parameters()),
        ignored=sorted(build(FlatReduceDDP, rank).parameters_to_ignore))
    torch.save(result, f'{out_dir}/rank{rank}.pt')
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])

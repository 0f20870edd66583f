# Copyright (c) mmsmlp contributors. All rights reserved.
"""Run by tests/test_recipe.py under torch.distributed.run (2 CPU processes,
gloo): trains a config with mmengine's Runner and, at the start of each
epoch, writes what each rank's randomness and sampler give; at the end,
the wrapper and the trained weights.

    python -m torch.distributed.run --nproc_per_node 2 tests/rank_probe.py \
        CONFIG WORK_DIR

mmengine's launcher initialises the process group on a GPU only
(``torch.cuda.set_device``); here it is initialised first, with gloo, and
the Runner finds it initialised.
"""
import json
import os.path as osp
import sys

import numpy as np
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import Runner

import mmsmlp  # noqa: F401


@HOOKS.register_module()
class RankProbeHook(Hook):
    """After EpochSeedHook has seeded the epoch: the rank's seed, its
    sampler's seed and indices, the number of batches and draws from torch
    and numpy, as ``rank<r>_epoch<e>.json`` in ``out_dir``."""
    priority = 'LOWEST'

    def __init__(self, out_dir):
        self.out_dir = out_dir

    def before_train_epoch(self, runner):
        loader = runner.train_dataloader
        record = dict(
            rank=get_rank(),
            seed=runner.seed,
            sampler_seed=loader.sampler.seed,
            indices=[int(i) for i in loader.sampler],
            batches=len(loader),
            torch=torch.rand(4).tolist(),
            numpy=np.random.rand(4).tolist())
        path = osp.join(self.out_dir,
                        f'rank{record["rank"]}_epoch{runner.epoch}.json')
        with open(path, 'w') as f:
            json.dump(record, f)

    def before_train(self, runner):
        self.initial = weight_sums(runner.model.module)

    def after_train(self, runner):
        """The wrapper, the initial and the trained weights (their sums),
        as ``rank<r>_end.json``: a data-parallel wrapper leaves every rank
        with the same ones."""
        record = dict(
            wrapper=type(runner.model).__name__,
            initial=self.initial,
            trained=weight_sums(runner.model.module))
        path = osp.join(self.out_dir, f'rank{get_rank()}_end.json')
        with open(path, 'w') as f:
            json.dump(record, f)


def weight_sums(model):
    return {
        name: param.detach().double().sum().item()
        for name, param in model.named_parameters()
    }


def main(config, work_dir):
    dist.init_process_group('gloo')
    cfg = Config.fromfile(config)
    cfg.launcher = 'pytorch'
    cfg.work_dir = work_dir
    # the config's wrapper (mmengine's DDP by default); DDP of a CPU model
    # takes no device ids
    cfg.model_wrapper_cfg = dict(
        cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel'),
        device_ids=None)
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
        dict(type='RankProbeHook', out_dir=work_dir)
    ]
    Runner.from_cfg(cfg).train()
    dist.destroy_process_group()


if __name__ == '__main__':
    main(*sys.argv[1:3])

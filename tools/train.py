# Copyright (c) mmsmlp contributors. All rights reserved.
"""Train a model: classification (mmpretrain), detection (mmdet) or
segmentation (mmseg). The config's ``default_scope`` picks the codebase."""
import argparse
import contextlib
import os
import os.path as osp
import warnings

# First: registers SMLPNet and mmsmlp's modules.
import mmsmlp  # noqa: F401,I001  isort:skip
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner, find_latest_checkpoint

from mmsmlp.compat import trust_checkpoints
from mmsmlp.compat.torch_checkpoint import describe_unloadable
from mmsmlp.utils import (check_config, check_data_paths, check_schedule,
                          claim_work_dir)


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or (no value) from the latest '
        'checkpoint in the work directory')
    parser.add_argument(
        '--amp', action='store_true', help='mixed precision training')
    parser.add_argument(
        '--compile',
        nargs='?',
        const='default',
        metavar='MODE',
        help='compile the model\'s forward with torch.compile (MODE: '
        'default, reduce-overhead (CUDA graphs), max-autotune, ...)')
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='load checkpoints (load_from, --resume, init_cfg) with full '
        'pickle, which can run code: only for files you trust that '
        'weights-only loading refuses')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual total batch size over '
        'the config\'s auto_scale_lr.base_batch_size')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs (e.g. '
        'train_dataloader.batch_size=32)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    # work_dir: command line > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') in (
                'AmpOptimWrapper', 'MixedPrecisionOptimWrapper'):
            print('AMP is already enabled in the config.')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
        if find_latest_checkpoint(cfg.work_dir) is None:
            warnings.warn(f'--resume: no checkpoint in {cfg.work_dir} '
                          '(no last_checkpoint file): training from scratch')
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if args.compile is not None:
        kwargs = {} if args.compile == 'default' else dict(mode=args.compile)
        cfg.custom_hooks = list(cfg.get('custom_hooks', None) or []) + [
            dict(type='CompileForwardHook', **kwargs)
        ]
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg:
            raise KeyError(f'--auto-scale-lr needs `auto_scale_lr` (with '
                           f'base_batch_size) in the config {args.config}')
        cfg.auto_scale_lr.enable = True
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    return cfg


def main():
    args = parse_args()
    cfg = merge_args(Config.fromfile(args.config), args)
    # before any dataset or data-loader worker exists
    check_data_paths(cfg, ('train_dataloader', 'val_dataloader'))
    check_config(cfg)  # top-level key typos, hook options
    load_from = cfg.get('load_from', None)
    if load_from and '://' not in load_from:
        which = '--resume' if cfg.get('resume') else 'load_from'
        if not osp.isfile(load_from):
            raise FileNotFoundError(f'{which}: checkpoint {load_from} not '
                                    'found')
        problem = describe_unloadable(load_from)
        if problem:
            raise ValueError(f'{which}: {load_from} is not a checkpoint '
                             f'(truncated?): {problem}')
    # one training run per work_dir, one log folder per run
    with claim_work_dir(cfg.work_dir, args.launcher):
        runner = (RUNNERS.build(cfg)
                  if 'runner_type' in cfg else Runner.from_cfg(cfg))
    check_schedule(cfg)  # e.g. max_epochs not longer than the warm-up
    with (trust_checkpoints('--trust-checkpoint')
          if args.trust_checkpoint else contextlib.nullcontext()):
        runner.train()


if __name__ == '__main__':
    main()

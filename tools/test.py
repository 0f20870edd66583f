# Copyright (c) mmsmlp contributors. All rights reserved.
"""Evaluate a checkpoint: classification (mmpretrain), detection (mmdet) or
segmentation (mmseg). The config's ``default_scope`` picks the codebase."""
import argparse
import os
import os.path as osp

# First: registers SMLPNet and applies mmsmlp's fixes to the stack.
import mmsmlp  # noqa: F401,I001  isort:skip
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmsmlp.utils import check_config, check_data_paths, claim_work_dir


def parse_args():
    parser = argparse.ArgumentParser(description='Test (evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the dir to save the evaluation metrics')
    parser.add_argument(
        '--out', help='dump the predictions to this pickle file')
    parser.add_argument(
        '--show-dir',
        help='save pictures of the predictions to this folder (relative to '
        'the work dir)')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation (the config\'s tta_model and '
        'tta_pipeline)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs')
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
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint {args.checkpoint} not found')
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise KeyError(f'--tta needs `tta_model` and `tta_pipeline` in '
                           f'the config {args.config}')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.show_dir:
        hooks = cfg.default_hooks
        if 'visualization' not in hooks:
            raise KeyError('--show-dir needs a `visualization` hook in '
                           f'default_hooks of {args.config}')
        hooks.visualization.enable = True
        hooks.visualization.draw = True
        hooks.visualization.out_dir = args.show_dir
        # The hooks of mmpretrain and of mmdet/mmseg name the switch apart.
        if cfg.get('default_scope') == 'mmpretrain':
            hooks.visualization.pop('draw')
        elif cfg.get('default_scope') == 'mmseg':
            # mmseg's SegVisualizationHook takes no output folder: it draws
            # every `interval` images through the visualizer's backends, into
            # visualizer.save_dir.
            hooks.visualization.pop('enable')
            hooks.visualization.interval = 1
            cfg.visualizer.save_dir = osp.join(
                cfg.work_dir, hooks.visualization.pop('out_dir'))
        else:
            hooks.visualization.pop('enable')
            hooks.visualization.test_out_dir = hooks.visualization.pop(
                'out_dir')
    return cfg


def main():
    args = parse_args()
    cfg = merge_args(Config.fromfile(args.config), args)
    check_data_paths(cfg, ('test_dataloader', ))  # before any dataset exists
    check_config(cfg)  # top-level key typos, hook options
    with claim_work_dir(cfg.work_dir, args.launcher, train=False):
        runner = (RUNNERS.build(cfg)
                  if 'runner_type' in cfg else Runner.from_cfg(cfg))
    if args.out:
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    runner.test()


if __name__ == '__main__':
    main()

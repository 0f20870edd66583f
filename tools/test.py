# Copyright (c) mmsmlp contributors. All rights reserved.
"""Evaluate a checkpoint: classification (mmpretrain), detection (mmdet) or
segmentation (mmseg). The config's ``default_scope`` picks the codebase."""
import argparse
import contextlib
import os
import os.path as osp

# First: registers SMLPNet and mmsmlp's modules.
import mmsmlp  # noqa: F401,I001  isort:skip
from mmengine.config import Config, DictAction
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmsmlp.compat import load_checkpoint_file, trust_checkpoints
from mmsmlp.utils import (check_checkpoint, check_config, check_data_paths,
                          claim_work_dir)


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
        help='draw the predictions on every test image into this folder '
        '(relative to the work dir)')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation (the config\'s tta_model and '
        'tta_pipeline)')
    parser.add_argument(
        '--allow-partial',
        action='store_true',
        help='evaluate even if the checkpoint lacks some of the model\'s '
        'tensors or has them in other shapes (an error otherwise)')
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='load the checkpoint with full pickle, which can run code: '
        'only for a file you trust that weights-only loading refuses')
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
        # Every test image is drawn, into <work_dir>/<show_dir> (an
        # absolute --show-dir stays as it is), whichever codebase's hook.
        show_dir = osp.abspath(osp.join(cfg.work_dir, args.show_dir))
        vis = hooks.visualization
        scope = cfg.get('default_scope')
        if scope == 'mmpretrain':
            # VisualizationHook draws the samples whose index is a multiple
            # of `interval` (default 5000: the first only) to `out_dir`, a
            # path it takes as it is.
            vis.update(enable=True, interval=1, out_dir=show_dir)
        elif scope == 'mmseg':
            # SegVisualizationHook draws every `interval`-th image through
            # the visualizer's backends: LocalVisBackend writes
            # <save_dir>/vis_data/vis_image/<name>_<index>.png.
            vis.update(draw=True, interval=1)
            cfg.visualizer.save_dir = show_dir
        else:
            # mmdet's DetVisualizationHook draws every test image to
            # <work_dir>/<timestamp>/<test_out_dir>; an absolute path
            # replaces all of it.
            vis.update(draw=True, test_out_dir=show_dir)
    return cfg


def main():
    args = parse_args()
    cfg = merge_args(Config.fromfile(args.config), args)
    check_data_paths(cfg, ('test_dataloader', ))  # before any dataset exists
    check_config(cfg)  # top-level key typos, hook options
    # Read (weights-only unless trusted) and checked against the model
    # before anything is evaluated: weights that do not belong to the model
    # are an error, not a random-weights score.
    checkpoint = load_checkpoint_file(
        args.checkpoint, trust=args.trust_checkpoint)
    with claim_work_dir(cfg.work_dir, args.launcher, train=False):
        runner = (RUNNERS.build(cfg)
                  if 'runner_type' in cfg else Runner.from_cfg(cfg))
    model = runner.model
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module  # mmengine loads into the inner model too
    check_checkpoint(model, checkpoint, args.checkpoint, args.allow_partial)
    del checkpoint
    if args.out:
        from mmengine.evaluator import DumpResults
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))
    with (trust_checkpoints('--trust-checkpoint')
          if args.trust_checkpoint else contextlib.nullcontext()):
        runner.test()


if __name__ == '__main__':
    main()

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Whole-image against sliding-window inference of UperNet + sMLPNet, on
generated ADE20K-format data, on a CPU, in a few minutes:

    python tools/analysis_tools/seg_test_modes.py [--work-dir DIR]

1. writes generated images in ADE20K's layout
   (``mmsmlp.datasets.synthetic_ade20k``), ``--size`` (HxW) each;
2. trains a small UperNet + sMLPNet (the T config's recipe, scaled down:
   ``--crop`` crops of images resized as the config resizes 2048x512 to
   512, a small sMLPNet and narrower heads, no ImageNet checkpoint) for
   ``--iters`` iterations through ``tools/train.py``;
3. evaluates the last checkpoint through ``tools/test.py`` with
   ``model.test_cfg.mode=whole`` and with ``mode=slide`` (``--crop``
   windows, stride 2/3 of the crop, as the config's 512/341), and prints
   mIoU, mAcc and aAcc of both.
"""
import argparse
import glob
import json
import os.path as osp
import subprocess
import sys

# First: mmsmlp's registrations (and no pkg_resources warning).
import mmsmlp  # noqa: F401,I001  isort:skip
from mmsmlp.datasets.synthetic_ade20k import make_ade20k

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO_ROOT, 'configs', 'upernet',
                  'smlpnet-t_upernet_8xb2-160k_ade20k-512x512.py')


def run(*args):
    result = subprocess.run([sys.executable, *args], capture_output=True,
                            text=True, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise SystemExit(result.stdout[-3000:] + result.stderr[-3000:])
    return result.stdout + result.stderr


def options(data_root, crop, iters, batch):
    c = crop
    opts = [
        'model.backbone.init_cfg=None',
        'model.backbone.arch._delete_=True',
        'model.backbone.arch.embed_dims=32',
        'model.backbone.arch.depths=[1,1,2,1]',
        'model.backbone.arch.mlp_ratio=3',
        f'model.backbone.img_size=({c},{c})',
        'model.decode_head.in_channels=[32,64,128,256]',
        'model.decode_head.channels=64',
        'model.auxiliary_head.in_channels=128',
        'model.auxiliary_head.channels=32',
        f'model.data_preprocessor.size=({c},{c})',
        f'train_dataloader.dataset.pipeline.2.scale=({4 * c},{c})',
        f'train_dataloader.dataset.pipeline.3.crop_size=({c},{c})',
        f'model.test_cfg.crop_size=({c},{c})',
        f'model.test_cfg.stride=({2 * c // 3},{2 * c // 3})',
        f'train_dataloader.batch_size={batch}',
        # the recipe's warm-up and poly decay, on the short run
        'param_scheduler.0.end=50', 'param_scheduler.1.begin=50',
        f'param_scheduler.1.end={iters}', 'optim_wrapper.optimizer.lr=6e-4',
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        f'default_hooks.checkpoint.interval={iters}',
        'default_hooks.checkpoint.save_optimizer=False',
        'default_hooks.logger.interval=20',
    ]
    for loader in ('train', 'val', 'test'):
        opts += [f'{loader}_dataloader.dataset.data_root={data_root}',
                 f'{loader}_dataloader.num_workers=0',
                 f'{loader}_dataloader.persistent_workers=False']
        if loader != 'train':
            opts.append(
                f'{loader}_dataloader.dataset.pipeline.1.scale=({4 * c},{c})')
    return opts


def test_metrics(work_dir):
    path = sorted(glob.glob(osp.join(work_dir, '2*', '2*.json')))[-1]
    with open(path) as f:
        return json.load(f)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/seg_test_modes')
    parser.add_argument('--size', default='64x85',
                        help='image size HxW (default 64x85: 512x683 / 8)')
    parser.add_argument('--crop', type=int, default=64)
    parser.add_argument('--num-train', type=int, default=24)
    parser.add_argument('--num-val', type=int, default=12)
    parser.add_argument('--iters', type=int, default=120)
    parser.add_argument('--batch', type=int, default=4)
    args = parser.parse_args()
    size = tuple(int(s) for s in args.size.split('x'))
    data_root = osp.join(args.work_dir, 'ade')
    if not osp.isdir(data_root):
        make_ade20k(data_root, args.num_train, args.num_val, size, seed=0)
    opts = options(data_root, args.crop, args.iters, args.batch)
    train_dir = osp.join(args.work_dir, 'train')
    run(osp.join(REPO_ROOT, 'tools', 'train.py'), CONFIG, '--work-dir',
        train_dir, '--cfg-options', *opts)
    checkpoint = osp.join(train_dir, f'iter_{args.iters}.pth')
    rows = []
    for mode in ('whole', 'slide'):
        test_dir = osp.join(args.work_dir, f'test_{mode}')
        run(osp.join(REPO_ROOT, 'tools', 'test.py'), CONFIG, checkpoint,
            '--work-dir', test_dir, '--cfg-options', *opts,
            f'model.test_cfg.mode={mode}')
        m = test_metrics(test_dir)
        rows.append((mode, m['mIoU'], m['mAcc'], m['aAcc']))
    print('| test mode | mIoU | mAcc | aAcc |\n|---|---|---|---|')
    for mode, miou, macc, aacc in rows:
        print(f'| {mode} | {miou:.2f} | {macc:.2f} | {aacc:.2f} |')


if __name__ == '__main__':
    main()

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Frozen against trained against synchronised backbone BatchNorm in
Mask R-CNN + sMLPNet, on generated COCO-format data, on a CPU:

    python tools/analysis_tools/det_bn_compare.py [--work-dir DIR]

1. trains a small sMLPNet classifier on the generated "shapes" ImageNet
   (the quick-start config, ``--cls-epochs``): the "ImageNet checkpoint",
   with BatchNorm statistics of the same kind of images;
2. writes generated COCO-format data (``mmsmlp.datasets.synthetic_coco``);
3. trains the T 1x Mask R-CNN config with that backbone (its checkpoint
   loaded through ``init_cfg``), the same data order, seed, optimizer steps
   and images per step (``--gpus`` x 2), three ways:

   - ``frozen``: the config (``norm_eval=True``): ImageNet statistics;
   - ``BN``: ``norm_eval=False``, statistics of each GPU's 2 images,
     emulated by batches of 2 with ``--gpus`` gradient-accumulation steps;
   - ``SyncBN``: ``norm_eval=False``, statistics of all ``--gpus`` x 2
     images of a step, emulated by one batch of ``--gpus`` x 2 images (on one
     process mmengine turns SyncBN into BN, so SyncBN itself would equal
     BN over the process's batch);

4. prints each run's mean training loss over the last epoch and COCO bbox
   and segm mAP on the validation images after training.
"""
import argparse
import glob
import json
import os.path as osp
import subprocess
import sys

# First: mmsmlp's registrations (and no pkg_resources warning).
import mmsmlp  # noqa: F401,I001  isort:skip
from mmsmlp.datasets import make_imagenet
from mmsmlp.datasets.synthetic_coco import make_coco

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
QUICKSTART = osp.join(REPO_ROOT, 'configs', 'quickstart',
                      'smlpnet-mini_1xb32_synthetic-in1k-format.py')
DET_CONFIG = osp.join(REPO_ROOT, 'configs', 'mask_rcnn',
                      'mask-rcnn_smlpnet-t_fpn_1x_coco.py')
ARCH = dict(embed_dims=32, depths=[1, 1, 2, 1], mlp_ratio=3)  # quick start's


def run(*args):
    result = subprocess.run([sys.executable, *args], capture_output=True,
                            text=True, cwd=REPO_ROOT)
    if result.returncode != 0:
        raise SystemExit(result.stdout[-3000:] + result.stderr[-3000:])
    return result.stdout + result.stderr


def scalars(work_dir):
    path = sorted(glob.glob(osp.join(work_dir, '2*', 'vis_data',
                                     'scalars.json')))[-1]
    with open(path) as f:
        return [json.loads(line) for line in f]


def loaders(data_root, val_ann=None):
    opts = []
    for loader in ('train', 'val', 'test'):
        opts += [f'{loader}_dataloader.dataset.data_root={data_root}',
                 f'{loader}_dataloader.num_workers=0',
                 f'{loader}_dataloader.persistent_workers=False']
    if val_ann:
        opts += [f'val_evaluator.ann_file={val_ann}',
                 f'test_evaluator.ann_file={val_ann}']
    return opts


def detection_options(coco_root, size, checkpoint, epochs, batch, accumulate,
                      norm_eval):
    scale = f'({size[0]},{size[1]})'
    return [
        *loaders(coco_root, f'{coco_root}/annotations/instances_val2017.json'),
        f'train_dataloader.dataset.pipeline.2.scale={scale}',
        f'val_dataloader.dataset.pipeline.1.scale={scale}',
        f'test_dataloader.dataset.pipeline.1.scale={scale}',
        f'train_dataloader.batch_size={batch}',
        f'optim_wrapper.accumulative_counts={accumulate}',
        'model.backbone.arch._delete_=True',
        f'model.backbone.arch.embed_dims={ARCH["embed_dims"]}',
        'model.backbone.arch.depths=[1,1,2,1]',
        f'model.backbone.arch.mlp_ratio={ARCH["mlp_ratio"]}',
        'model.backbone.img_size=64',  # that of the classifier
        f'model.backbone.norm_eval={norm_eval}',
        f'model.backbone.init_cfg.checkpoint={checkpoint}',
        'model.neck.in_channels=[32,64,128,256]',
        # fewer RoIs and a narrower mask head (CPU time)
        'model.train_cfg.rpn_proposal.max_per_img=200',
        'model.train_cfg.rcnn.sampler.num=32',
        'model.roi_head.mask_head.conv_out_channels=64',
        'model.test_cfg.rpn.max_per_img=100',
        # the recipe's warm-up and steps, on the short run (per epoch, so
        # that runs with other batch sizes follow the same curve)
        'param_scheduler.0.by_epoch=True', 'param_scheduler.0.end=1',
        'param_scheduler.0.convert_to_iter_based=True',
        f'param_scheduler.1.milestones=[{epochs}]',  # no step: short run
        'optim_wrapper.optimizer.lr=2e-4',
        f'train_cfg.max_epochs={epochs}', f'train_cfg.val_interval={epochs}',
        f'default_hooks.checkpoint.interval={epochs}',
        'default_hooks.checkpoint.save_optimizer=False',
        'default_hooks.logger.interval=4',
        'randomness.seed=0',
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/det_bn_compare')
    parser.add_argument('--cls-epochs', type=int, default=4)
    parser.add_argument('--cls-images', type=int, default=300,
                        help='training images of the classifier (10 classes)')
    parser.add_argument('--size', default='160x128',
                        help='COCO image size WxH (default 160x128)')
    parser.add_argument('--num-train', type=int, default=32)
    parser.add_argument('--num-val', type=int, default=16)
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument('--gpus', type=int, default=2,
                        help='GPUs x 2 images per optimizer step')
    parser.add_argument('--runs', default='frozen,BN,SyncBN')
    args = parser.parse_args()
    size = tuple(int(s) for s in args.size.split('x'))

    # 1. the "ImageNet" classifier
    imagenet = osp.join(args.work_dir, 'imagenet')
    cls_dir = osp.join(args.work_dir, 'classifier')
    checkpoint = osp.join(cls_dir, f'epoch_{args.cls_epochs}.pth')
    if not osp.isfile(checkpoint):
        make_imagenet(imagenet, train_per_class=args.cls_images // 10,
                      val_per_class=10, size=72)
        run(osp.join(REPO_ROOT, 'tools', 'train.py'), QUICKSTART,
            '--work-dir', cls_dir, '--cfg-options', *loaders(imagenet),
            f'train_cfg.max_epochs={args.cls_epochs}',
            f'train_cfg.val_interval={args.cls_epochs}',
            f'default_hooks.checkpoint.interval={args.cls_epochs}')
    top1 = [s for s in scalars(cls_dir) if 'accuracy/top1' in s][-1]
    print(f'classifier: top-1 {top1["accuracy/top1"]:.1f}% '
          f'({args.cls_epochs} epochs)')

    # 2. COCO-format data
    coco = osp.join(args.work_dir, 'coco') + '/'
    if not osp.isdir(coco):
        make_coco(coco, args.num_train, args.num_val, size, seed=0)

    # 3. three detectors
    images = 2 * args.gpus
    runs = dict(
        frozen=dict(batch=2, accumulate=args.gpus, norm_eval=True),
        BN=dict(batch=2, accumulate=args.gpus, norm_eval=False),
        SyncBN=dict(batch=images, accumulate=1, norm_eval=False))
    rows = []
    for name in args.runs.split(','):
        work_dir = osp.join(args.work_dir, name)
        if not glob.glob(osp.join(work_dir, '2*', 'vis_data',
                                  'scalars.json')):
            run(osp.join(REPO_ROOT, 'tools', 'train.py'), DET_CONFIG,
                '--work-dir', work_dir, '--cfg-options',
                *detection_options(coco, size, checkpoint, args.epochs,
                                   **runs[name]))
        logs = scalars(work_dir)
        last = [s['loss'] for s in logs
                if 'loss' in s and s.get('epoch') == args.epochs]
        first = [s['loss'] for s in logs
                 if 'loss' in s and s.get('epoch') == 1]
        val = [s for s in logs if 'coco/bbox_mAP' in s][-1]
        rows.append((name, sum(first) / len(first), sum(last) / len(last),
                     val['coco/bbox_mAP'], val['coco/segm_mAP']))
    print(f'{args.epochs} epochs of {args.num_train} {args.size} images, '
          f'{images} images per optimizer step')
    print('| backbone BN | loss, epoch 1 | loss, last epoch | bbox mAP | '
          'segm mAP |\n|---|---|---|---|---|')
    for name, first, last, bbox, segm in rows:
        print(f'| {name} | {first:.3f} | {last:.3f} | {bbox:.3f} | '
              f'{segm:.3f} |')


if __name__ == '__main__':
    main()

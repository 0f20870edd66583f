# Copyright (c) mmsmlp contributors. All rights reserved.
"""Training speed and memory of Mask R-CNN: sMLPNet-T against mmdet's Swin-T.

On a CUDA machine (no internet needed):

    python tools/analysis_tools/det_speed.py

generates COCO-format data (32 images of COCO's common sizes, ``--size
coco``, the default: batches come in several shapes, as on COCO, and the
sMLPNet-T config replays graphs only for the shapes that repeat; or of one
size, e.g. ``--size 1333x800``), then trains each model for 40 iterations
with ``tools/train.py --amp`` (fp16: mmcv's RoIAlign has no bf16 kernel),
2 images per GPU, logging every 10 iterations, and prints the seconds per
iteration (mean of the logged ``time`` after the first logging window, i.e.
without the warm-up) and the peak GPU memory (mmengine's ``memory``, MB)
of each ``--models``:

- ``smlpnet-t``: configs/mask_rcnn/mask-rcnn_smlpnet-t_fpn_1x_coco.py (its
  backbone trains through CUDA graphs for the batch shapes that repeat)
- ``smlpnet-t-eager``: the same with its CUDAGraphHook off
- ``swin-t``: mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py (mmdet's
  own config)

Both backbones start from random weights (``model.backbone.init_cfg=None``):
the speed does not depend on them. A quick check on a CPU machine:

    python tools/analysis_tools/det_speed.py --device cpu --iters 4 --interval 2 --size 320x256 --num-images 8

(no AMP on CPU: mmengine's AmpOptimWrapper needs a GPU).
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys

# COCO's common image sizes (WxH), repeated for a rough weight: about half
# of COCO's images are 640x480 or 640x427 landscapes. The 1x pipeline
# resizes them to 1088x800 and 1216x800 (after padding to 32), portraits to
# 800x1088 and 800x1216, 640x360 to 1344x768 and squares to 800x800; a
# batch takes its images' largest height and width, and mmdet's
# AspectRatioBatchSampler puts landscapes with landscapes.
COCO_SIZES = ['640x480'] * 8 + ['640x427'] * 5 + ['480x640'] * 2 + [
    '427x640'] * 2 + ['500x375', '640x360', '612x612']
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
MODELS = {
    'smlpnet-t': osp.join(REPO_ROOT, 'configs', 'mask_rcnn',
                          'mask-rcnn_smlpnet-t_fpn_1x_coco.py'),
    'swin-t': 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
}
# the sMLPNet-T config with its CUDAGraphHook off: the backbone all eager
MODELS['smlpnet-t-eager'] = MODELS['smlpnet-t']
EXTRA_OPTIONS = {'smlpnet-t-eager': ['custom_hooks.2.enabled=False']}


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.split('\n')[2:]))
    parser.add_argument(
        '--work-dir', default=osp.join('work_dirs', 'det_speed'),
        help='data, logs and the summary go here (default '
        'work_dirs/det_speed)')
    parser.add_argument(
        '--device', choices=['cuda', 'cpu'], default='cuda',
        help='cuda (default; AMP fp16) or cpu (a dry run, no AMP)')
    parser.add_argument('--iters', type=int, default=40)
    parser.add_argument(
        '--interval', type=int, default=10,
        help='logging interval and timing window (iterations)')
    parser.add_argument(
        '--size', default='coco', help='"coco" (default): a mix of COCO\'s '
        'common sizes (COCO_SIZES), so that batches take several shapes, as '
        'on COCO; or one image size WxH (1333x800: no resizing in the 1x '
        'pipeline)')
    parser.add_argument('--num-images', type=int, default=32)
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--workers', type=int, default=4)
    parser.add_argument(
        '--models', nargs='+', choices=list(MODELS),
        default=['smlpnet-t', 'swin-t'])
    args = parser.parse_args()
    if args.iters < 2 * args.interval:
        parser.error('--iters must be at least 2 x --interval: the first '
                     'logging window (warm-up) is not timed')
    return args


def train_options(data_root, args):
    data_root = data_root.rstrip('/') + '/'
    opts = [
        'model.backbone.init_cfg=None',
        # a short iteration-based schedule, no validation, no checkpoints
        'train_cfg._delete_=True',
        'train_cfg.type=IterBasedTrainLoop',
        f'train_cfg.max_iters={args.iters}',
        f'train_cfg.val_interval={args.iters + 1}',
        'default_hooks.checkpoint=None',
        f'default_hooks.logger.interval={args.interval}',
        # `time` in the log: the mean over the last `interval` iterations
        f'log_processor.window_size={args.interval}',
        'log_processor.by_epoch=False',
        f'train_dataloader.batch_size={args.batch_size}',
        f'train_dataloader.num_workers={args.workers}',
        f'train_dataloader.persistent_workers={args.workers > 0}',
        f'train_dataloader.dataset.data_root={data_root}',
        'randomness.seed=0',
    ]
    return opts


def scalars(work_dir):
    paths = sorted(
        glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not paths:
        raise FileNotFoundError(f'no scalars.json under {work_dir}: did the '
                                f'training log anything?')
    with open(paths[-1]) as f:
        return [json.loads(line) for line in f]


def summarize(logs, interval):
    timed = [s for s in logs if 'time' in s and s.get('iter', 0) > interval]
    if not timed:
        raise RuntimeError(f'no timed iterations after the first {interval} '
                           f'in the log: {logs}')
    memory = [s['memory'] for s in logs if 'memory' in s]
    return {
        'sec_per_iter': sum(s['time'] for s in timed) / len(timed),
        'data_sec_per_iter': sum(s['data_time'] for s in timed) / len(timed),
        'peak_memory_mb': max(memory) if memory else None,
        'timed_iters': [s['iter'] for s in timed],
        'last_loss': timed[-1].get('loss'),
    }


def main():
    args = parse_args()
    sys.path.insert(0, REPO_ROOT)
    from mmsmlp.datasets.synthetic_coco import make_coco

    work_dir = osp.abspath(args.work_dir)
    sizes = COCO_SIZES if args.size == 'coco' else [args.size]
    size = [tuple(int(s) for s in wxh.lower().split('x')) for wxh in sizes]
    data_root = osp.join(work_dir, f'coco_{args.size}_{args.num_images}')
    if not osp.isfile(
            osp.join(data_root, 'annotations', 'instances_train2017.json')):
        print(f'Generating {args.num_images} COCO-format images of '
              f'{args.size} in {data_root}')
        make_coco(data_root, args.num_images, 1, size, seed=0)

    env = dict(os.environ)
    env['PYTHONPATH'] = REPO_ROOT + (
        os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    if args.device == 'cpu':
        env['CUDA_VISIBLE_DEVICES'] = ''
    results = {}
    for name in args.models:
        config = MODELS[name]
        if config.startswith('mmdet::'):
            # tools/train.py takes a file; this one only inherits mmdet's
            config = osp.join(work_dir, f'{name}.py')
            os.makedirs(work_dir, exist_ok=True)
            with open(config, 'w') as f:
                f.write(f'_base_ = {MODELS[name]!r}\n')
        run_dir = osp.join(work_dir, name)
        cmd = [
            sys.executable, osp.join(REPO_ROOT, 'tools', 'train.py'), config,
            '--work-dir', run_dir, '--no-validate'
        ]
        if args.device == 'cuda':
            cmd.append('--amp')  # AmpOptimWrapper, fp16 autocast
        cmd += ['--cfg-options', *train_options(data_root, args),
                *EXTRA_OPTIONS.get(name, [])]
        print('\n$ ' + ' '.join(cmd), flush=True)
        subprocess.run(cmd, check=True, env=env, cwd=REPO_ROOT)
        results[name] = summarize(scalars(run_dir), args.interval)

    amp = 'AMP fp16' if args.device == 'cuda' else 'fp32, no AMP'
    print(f'\nMask R-CNN 1x training, {args.device} ({amp}), '
          f'{args.batch_size} images/iter of {args.size}, {args.iters} iters'
          f' (timed: after iteration {args.interval})')
    print(f'{"backbone":<16}{"s/iter":>10}{"data s/iter":>13}'
          f'{"peak MB":>10}  last loss')
    for name, r in results.items():
        mem = '-' if r['peak_memory_mb'] is None else r['peak_memory_mb']
        print(f'{name:<16}{r["sec_per_iter"]:>10.3f}'
              f'{r["data_sec_per_iter"]:>13.3f}{mem:>10}  {r["last_loss"]}')
    out = osp.join(work_dir, 'det_speed.json')
    with open(out, 'w') as f:
        json.dump(
            dict(device=args.device, amp=args.device == 'cuda',
                 size=args.size, batch_size=args.batch_size,
                 iters=args.iters, results=results), f, indent=2)
    print(f'Summary written to {out}')


if __name__ == '__main__':
    main()

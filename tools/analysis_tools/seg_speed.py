# Copyright (c) mmsmlp contributors. All rights reserved.
"""Training speed and peak GPU memory: UperNet + sMLPNet-T against mmseg's
own UperNet + Swin-T, same data, same recipe, one GPU, 2 images per GPU.

    python tools/analysis_tools/seg_speed.py

1. writes ``NUM_IMAGES`` generated ``SIZE`` images in ADE20K's layout
   (``tools/dataset_converters/make_synthetic_ade20k.py``);
2. trains each model for ``ITERS`` iterations through ``tools/train.py``
   (``--amp`` on CUDA unless ``AMP=0``; no validation, no checkpoint; the
   backbones are randomly initialised: no download, no ImageNet checkpoint);
   on one process mmengine turns the heads' SyncBN into BN;
3. prints seconds/iteration (mmengine's ``time``, the mean of the logged
   windows after the first, which holds the warm-up) and the peak memory
   (mmengine's ``memory``: ``torch.cuda.max_memory_allocated``, MB).

Environment variables (defaults for the GPU run):
    ITERS=40  SIZE=512x683  CROP=512  NUM_IMAGES=32  LOG_INTERVAL=10
    WORK_DIR=work_dirs/seg_speed  AMP=1  NUM_WORKERS=4  MODELS=smlpnet-t,swin-t
A CPU smoke run: ``ITERS=2 LOG_INTERVAL=1 SIZE=64x96 CROP=64 NUM_IMAGES=2
NUM_WORKERS=0 python tools/analysis_tools/seg_speed.py``.
"""
import glob
import json
import os
import os.path as osp
import subprocess
import sys

# First: mmsmlp's registrations (and no pkg_resources warning).
import mmsmlp  # noqa: F401,I001  isort:skip
import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SWIN_T = 'swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'  # noqa


def mmseg_config(name: str) -> str:
    """The path of one of the configs mmseg ships (``mmseg::NAME``)."""
    import mmseg
    path = osp.join(osp.dirname(mmseg.__file__), '.mim', 'configs', name)
    if not osp.isfile(path):
        raise FileNotFoundError(f'mmseg::{name} not found at {path}')
    return path


CONFIGS = {
    'smlpnet-t': osp.join(
        REPO_ROOT, 'configs', 'upernet',
        'smlpnet-t_upernet_8xb2-160k_ade20k-512x512.py'),
    'swin-t': None,  # resolved in main(): needs mmseg
}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, str(default))
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f'{name} must be an integer, got {value!r}')


def train_options(data_root, work_dir, iters, crop, interval, workers):
    return [
        '--work-dir', work_dir, '--no-validate', '--cfg-options',
        f'train_dataloader.dataset.data_root={data_root}',
        'train_dataloader.batch_size=2',
        f'train_dataloader.num_workers={workers}',
        f'train_dataloader.persistent_workers={workers > 0}',
        'model.backbone.init_cfg=None',
        f'train_cfg.max_iters={iters}',
        f'default_hooks.logger.interval={interval}',
        # the logged `time` is the mean over this many iterations
        f'log_processor.window_size={interval}',
        'default_hooks.checkpoint.interval=1000000000',
        'default_hooks.checkpoint.save_last=False',
        f'model.data_preprocessor.size=({crop},{crop})',
        # train pipeline: 1 RandomResize, 2 RandomCrop (checked in main())
        f'train_dataloader.dataset.pipeline.2.scale=({4 * crop},{crop})',
        f'train_dataloader.dataset.pipeline.3.crop_size=({crop},{crop})',
    ]


def check_pipeline(config: str):
    from mmengine.config import Config
    pipeline = Config.fromfile(config).train_dataloader.dataset.pipeline
    types = [t['type'] for t in pipeline]
    if types[2:4] != ['RandomResize', 'RandomCrop']:
        raise RuntimeError(f'{config}: expected RandomResize, RandomCrop at '
                           f'positions 2, 3 of the train pipeline, got '
                           f'{types}')


def read_scalars(work_dir: str) -> list:
    paths = sorted(
        glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not paths:
        raise FileNotFoundError(f'no scalars.json under {work_dir}')
    with open(paths[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]


def summarise(records: list, interval: int) -> dict:
    train = [r for r in records if 'time' in r and 'loss' in r]
    if not train:
        raise RuntimeError('no training iteration was logged')
    # Each record at iteration k (a multiple of the interval) holds the mean
    # time of iterations k - interval + 1 .. k. The first window holds the
    # warm-up (cudnn benchmark, allocator), and so does any record before it
    # (mmengine also logs the end of an "epoch" shorter than the interval).
    steady = [r for r in train if r['iter'] > interval] or train[-1:]
    memory = [r['memory'] for r in train if 'memory' in r]
    return dict(
        iters=train[-1]['iter'],
        time=sum(r['time'] for r in steady) / len(steady),
        data_time=sum(r['data_time'] for r in steady) / len(steady),
        memory=max(memory) if memory else None,
        windows=len(steady),
        loss=train[-1]['loss'])


def main():
    iters = env_int('ITERS', 40)
    crop = env_int('CROP', 512)
    num_images = env_int('NUM_IMAGES', 32)
    interval = env_int('LOG_INTERVAL', 10)
    workers = env_int('NUM_WORKERS', 4)
    size = os.environ.get('SIZE', '512x683')
    work_root = osp.abspath(os.environ.get('WORK_DIR', 'work_dirs/seg_speed'))
    names = os.environ.get('MODELS', 'smlpnet-t,swin-t').split(',')
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f'MODELS: unknown {unknown}, choose from '
                         f'{list(CONFIGS)}')
    cuda = torch.cuda.is_available()
    amp = cuda and os.environ.get('AMP', '1') != '0'
    CONFIGS['swin-t'] = mmseg_config(SWIN_T)
    device = torch.cuda.get_device_name(0) if cuda else 'CPU'
    print(f'device: {device}, torch {torch.__version__}, amp: {amp}, '
          f'{iters} iterations, batch 2, crop {crop}, images {size}')

    data_root = osp.join(work_root, f'ade20k_{size}_{num_images}')
    subprocess.run([
        sys.executable,
        osp.join(REPO_ROOT, 'tools', 'dataset_converters',
                 'make_synthetic_ade20k.py'), data_root, '--num-train',
        str(num_images), '--num-val', '1', '--size', size
    ], check=True, cwd=REPO_ROOT)

    results, failed = {}, []
    for name in names:
        config = CONFIGS[name]
        check_pipeline(config)
        work_dir = osp.join(work_root, name)
        cmd = [sys.executable, osp.join(REPO_ROOT, 'tools', 'train.py'),
               config] + (['--amp'] if amp else []) + train_options(
                   data_root, work_dir, iters, crop, interval, workers)
        print(f'\n[{name}] ' + ' '.join(cmd), flush=True)
        log_path = osp.join(work_root, f'{name}.log')
        os.makedirs(work_root, exist_ok=True)
        with open(log_path, 'w') as log:
            proc = subprocess.run(
                cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        if proc.returncode != 0:
            with open(log_path) as f:
                print(f.read()[-4000:])
            print(f'[{name}] FAILED (exit {proc.returncode}), log: {log_path}')
            failed.append(name)
            continue
        results[name] = summarise(read_scalars(work_dir), interval)
        print(f'[{name}] {results[name]}')

    print(f'\n{"model":<12} {"s/iter":>8} {"data s/iter":>12} '
          f'{"peak MB":>8}  (mean of {interval}-iteration windows after the '
          f'first; {device}, amp {amp})')
    for name, r in results.items():
        memory = f'{r["memory"]:.0f}' if r['memory'] is not None else 'n/a'
        print(f'{name:<12} {r["time"]:>8.4f} {r["data_time"]:>12.4f} '
              f'{memory:>8}')
    if failed:
        raise SystemExit(f'failed: {failed}')


if __name__ == '__main__':
    main()

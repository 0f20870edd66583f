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
   (mmengine's ``memory``: ``torch.cuda.max_memory_allocated``, MB);
4. evaluates the trained weights through ``tools/test.py`` on ``NUM_VAL``
   generated validation images of ``SIZE``, in each test mode of ``EVAL``
   (the config's batch of 1, fp32, its test pipeline and mIoU), and prints
   images/s: the mean of mmengine's logged ``time`` over the windows after
   the first, as for training.

Environment variables (defaults for the GPU run):
    ITERS=40  SIZE=512x683  CROP=512  NUM_IMAGES=32  LOG_INTERVAL=10
    WORK_DIR=work_dirs/seg_speed  AMP=1  NUM_WORKERS=4  MODELS=smlpnet-t,swin-t
    EVAL=whole,slide  NUM_VAL=50  (EVAL= : no evaluation)
    SMLP_OPTIONS=  more ``--cfg-options`` for the sMLPNet-T config's runs,
                   space-separated (e.g. ``custom_hooks.2.enabled=False``:
                   its backbone eager, without CUDA graphs)
A CPU smoke run: ``ITERS=2 LOG_INTERVAL=1 SIZE=64x96 CROP=64 NUM_IMAGES=2
NUM_WORKERS=0 EVAL= python tools/analysis_tools/seg_speed.py`` (the test
pipeline resizes images to 512 px on the short side: about 6 s an image on
a CPU).
"""
import glob
import json
import os
import os.path as osp
import re
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


def train_options(data_root, work_dir, iters, crop, interval, workers,
                  save_last=False):
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
        f'default_hooks.checkpoint.save_last={save_last}',
        # checkpoints that tools/test.py loads weights-only (mmseg's configs
        # use mmengine's hook, whose files hold pickled objects)
        'default_hooks.checkpoint.type=SafeCheckpointHook',
        f'model.data_preprocessor.size=({crop},{crop})',
        # train pipeline: 1 RandomResize, 2 RandomCrop (checked in main())
        f'train_dataloader.dataset.pipeline.2.scale=({4 * crop},{crop})',
        f'train_dataloader.dataset.pipeline.3.crop_size=({crop},{crop})',
    ]


def model_options(name: str, environ=os.environ) -> list:
    """``SMLP_OPTIONS``' entries for the sMLPNet-T runs (training and
    evaluation), none for the peer; each must be ``key=value``."""
    if name != 'smlpnet-t':
        return []
    options = environ.get('SMLP_OPTIONS', '').split()
    bad = [o for o in options if '=' not in o]
    if bad:
        raise SystemExit(f'SMLP_OPTIONS: expected key=value entries, got '
                         f'{bad}')
    return options


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


def test_options(data_root, work_dir, mode, crop, interval, workers):
    """tools/test.py's options: the generated validation images, one test
    mode, the config's batch size, sliding windows of the training crop
    with mmseg's 2/3 overlap (stride 341 at 512)."""
    return [
        '--work-dir', work_dir, '--cfg-options',
        f'test_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.num_workers={workers}',
        f'test_dataloader.persistent_workers={workers > 0}',
        f'model.test_cfg.mode={mode}',
        f'model.test_cfg.crop_size=({crop},{crop})',
        f'model.test_cfg.stride=({crop * 2 // 3},{crop * 2 // 3})',
        f'default_hooks.logger.interval={interval}',
        f'log_processor.window_size={interval}',
    ]


# mmengine's test log line, e.g. ``Iter(test) [20/50]  eta: ...  time: 0.0305
# data_time: 0.0012  memory: 812``
TEST_LINE = re.compile(r'Iter\(test\) \[\s*(\d+)/(\d+)\].*?\btime: '
                       r'([0-9.]+)\s+data_time: ([0-9.]+)')


def summarise_test(log: str, interval: int) -> dict:
    """Images/s of a test run (batch 1) from the windows of its log after
    the first (the warm-up: cuDNN's tuning, the allocator), and its mIoU."""
    windows = [(int(i), float(t), float(d))
               for i, _, t, d in TEST_LINE.findall(log)]
    steady = [w for w in windows if w[0] > interval]
    if not steady:
        raise RuntimeError(
            f'no test window after the first {interval} iterations was '
            f'logged ({len(windows)} windows): raise NUM_VAL')
    time_ = sum(w[1] for w in steady) / len(steady)
    miou = re.findall(r'\bmIoU: ([0-9.]+)', log)
    return dict(time=time_, images_per_s=1 / time_,
                data_time=sum(w[2] for w in steady) / len(steady),
                windows=len(steady), mIoU=float(miou[-1]) if miou else None)


def run(cmd, log_path, name) -> bool:
    print(f'\n[{name}] ' + ' '.join(cmd), flush=True)
    with open(log_path, 'w') as log:
        proc = subprocess.run(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT)
    if proc.returncode != 0:
        with open(log_path) as f:
            print(f.read()[-4000:])
        print(f'[{name}] FAILED (exit {proc.returncode}), log: {log_path}')
    return proc.returncode == 0


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
    eval_modes = [m for m in os.environ.get('EVAL', 'whole,slide').split(',')
                  if m]
    if set(eval_modes) - {'whole', 'slide'}:
        raise SystemExit(f'EVAL: test modes are whole and slide, got '
                         f'{eval_modes}')
    num_val = env_int('NUM_VAL', 50)
    cuda = torch.cuda.is_available()
    amp = cuda and os.environ.get('AMP', '1') != '0'
    CONFIGS['swin-t'] = mmseg_config(SWIN_T)
    device = torch.cuda.get_device_name(0) if cuda else 'CPU'
    print(f'device: {device}, torch {torch.__version__}, amp: {amp}, '
          f'{iters} iterations, batch 2, crop {crop}, images {size}')

    # The generator leaves an existing dataset as it is: the folder names
    # both counts, so a run never reuses one with too few validation images.
    data_root = osp.join(work_root, f'ade20k_{size}_{num_images}_{num_val}')
    subprocess.run([
        sys.executable,
        osp.join(REPO_ROOT, 'tools', 'dataset_converters',
                 'make_synthetic_ade20k.py'), data_root, '--num-train',
        str(num_images), '--num-val', str(num_val), '--size', size
    ], check=True, cwd=REPO_ROOT)

    results, evals, failed = {}, {}, []
    os.makedirs(work_root, exist_ok=True)
    for name in names:
        config = CONFIGS[name]
        check_pipeline(config)
        work_dir = osp.join(work_root, name)
        cmd = [sys.executable, osp.join(REPO_ROOT, 'tools', 'train.py'),
               config] + (['--amp'] if amp else []) + train_options(
                   data_root, work_dir, iters, crop, interval, workers,
                   save_last=bool(eval_modes)) + model_options(name)
        if not run(cmd, osp.join(work_root, f'{name}.log'), name):
            failed.append(name)
            continue
        results[name] = summarise(read_scalars(work_dir), interval)
        print(f'[{name}] {results[name]}')
        for mode in eval_modes:
            label = f'{name}/{mode}'
            log_path = osp.join(work_root, f'{name}_test_{mode}.log')
            cmd = [sys.executable, osp.join(REPO_ROOT, 'tools', 'test.py'),
                   config, osp.join(work_dir, f'iter_{iters}.pth')
                   ] + test_options(data_root, osp.join(work_dir, mode), mode,
                                    crop, interval, workers
                                    ) + model_options(name)
            if not run(cmd, log_path, label):
                failed.append(label)
                continue
            with open(log_path) as f:
                evals[label] = summarise_test(f.read(), interval)
            print(f'[{label}] {evals[label]}')

    print(f'\n{"model":<12} {"s/iter":>8} {"data s/iter":>12} '
          f'{"peak MB":>8}  (mean of {interval}-iteration windows after the '
          f'first; {device}, amp {amp})')
    for name, r in results.items():
        memory = f'{r["memory"]:.0f}' if r['memory'] is not None else 'n/a'
        print(f'{name:<12} {r["time"]:>8.4f} {r["data_time"]:>12.4f} '
              f'{memory:>8}')
    if evals:
        print(f'\n{"evaluation":<18} {"images/s":>9} {"s/image":>8} '
              f'{"data s":>7}  (batch 1, fp32, {num_val} images {size}; '
              f'mean of {interval}-image windows after the first)')
        for label, r in evals.items():
            print(f'{label:<18} {r["images_per_s"]:>9.1f} {r["time"]:>8.4f} '
                  f'{r["data_time"]:>7.4f}')
    if failed:
        raise SystemExit(f'failed: {failed}')


if __name__ == '__main__':
    main()

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Does each task learn with sMLPNet as well as with Swin-T? Short runs from
scratch on generated data, side by side, as curves and a table.

For each task, on data generated in the real formats (harder than the
defaults of the generators: more classes, clutter, occlusion, scale
variation; hundreds of validation images):

- ``cls``: ImageNet-format shapes (20 classes); sMLPNet-T
  (configs/smlpnet/smlpnet-t_8xb128_in1k.py) against mmpretrain's Swin-T and
  ConvNeXt-T configs; top-1 (mmpretrain's ``Accuracy``);
- ``det``: COCO-format instances with masks (14 categories, overlapping
  objects); Mask R-CNN 1x with sMLPNet-T (configs/mask_rcnn) against
  mmdet's Swin-T config; box and mask mAP (mmdet's ``CocoMetric``);
- ``seg``: ADE20K-format scenes (35 classes); UperNet with sMLPNet-T
  (configs/upernet) against mmseg's Swin-T config; mIoU (mmseg's
  ``IoUMetric``).

Each run trains a config derived from the shipped one through
``tools/train.py`` (a subprocess) and keeps the recipe: the optimizer, the
augmentations, the shape of the learning-rate schedule (warm-up and decay
scaled to the budget as fractions of the full schedule), EMA (its horizon
scaled the same way), AMP. Overridden: the schedule's length (an
iteration-based loop of ``--iters``, evaluated ``--evals`` times), the data
roots and image sizes, the batch size (the learning rate follows the
config's own linear-scaling rule, ``--auto-scale-lr``), the workers, the
logging and no checkpoints; every backbone starts from random weights
(``init_cfg=None``: no ImageNet checkpoint, no download). The derived config
of each run is written next to its log (``WORK_DIR/runs/TASK/BACKBONE``).

It reads each run's ``vis_data/scalars.json`` (the Runner's own log of the
loss and of the evaluator's metrics) and writes to ``--out-dir``:
``learning_TASK.png`` (loss and metrics over iterations, all backbones on one
chart per task), ``learning.md`` and ``learning.csv`` (the table) and
``learning.json`` (the curves; ``--merge`` rebuilds the table and charts
from several of them, e.g. from runs split over several machines).

On one GPU (docs/learning.md: the budget, the data, the split into calls)::

    python tools/analysis_tools/learning_check.py --tasks cls --jobs 3 \\
        --work-dir /tmp/lc --out-dir results/cls

A few iterations on tiny images on a CPU (what tests/test_learning_check.py
runs; nothing learns)::

    python tools/analysis_tools/learning_check.py --budget tiny --device cpu \\
        --workers 0 --evals 1
"""
import argparse
import csv
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys
import time
from concurrent.futures import (ProcessPoolExecutor, ThreadPoolExecutor,
                                as_completed)

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

CONFIGS = {
    'cls': {
        'smlpnet-t': osp.join(REPO_ROOT, 'configs', 'smlpnet',
                              'smlpnet-t_8xb128_in1k.py'),
        'swin-t': 'mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py',
        'convnext-t': 'mmpretrain::convnext/convnext-tiny_32xb128_in1k.py',
    },
    'det': {
        'smlpnet-t': osp.join(REPO_ROOT, 'configs', 'mask_rcnn',
                              'mask-rcnn_smlpnet-t_fpn_1x_coco.py'),
        'swin-t': 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
    },
    'seg': {
        'smlpnet-t': osp.join(REPO_ROOT, 'configs', 'upernet',
                              'smlpnet-t_upernet_8xb2-160k_ade20k-512x512.py'),
        'swin-t': 'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_'
                  '8xb2-160k_ade20k-512x512.py',
    },
}
# sMLPNet-T with its BatchNorm statistics trained (batch statistics) instead
# of the dense configs' frozen ones (norm_eval=True): from scratch, frozen
# statistics are those of the initialisation (mean 0, variance 1).
BN_VARIANT = 'smlpnet-t-trainbn'
for _task in ('det', 'seg'):
    CONFIGS[_task][BN_VARIANT] = CONFIGS[_task]['smlpnet-t']
DEFAULT_BACKBONES = {
    'cls': ['smlpnet-t', 'swin-t', 'convnext-t'],
    'det': ['smlpnet-t', 'swin-t'],
    'seg': ['smlpnet-t', 'swin-t'],
}
# The evaluator's keys in scalars.json, the first one charted first.
METRICS = {
    'cls': ['accuracy/top1', 'accuracy/top5'],
    'det': ['coco/bbox_mAP', 'coco/segm_mAP'],
    'seg': ['mIoU', 'aAcc'],
}
TASK_NAMES = {
    'cls': 'classification (ImageNet-format shapes)',
    'det': 'Mask R-CNN 1x (COCO-format instances)',
    'seg': 'UperNet (ADE20K-format scenes)',
}
# Training-set sizes of the full schedules, to turn epochs into iterations.
IMAGENET_TRAIN = 1281167
COCO_TRAIN = 118287
# AMP: mmcv's RoIAlign has no bf16 kernel (Mask R-CNN), and mmseg's recipes
# are run in fp16 (docs/segmentation.md); classification in bf16
# (docs/benchmarks.md).
AMP_DTYPE = {'cls': 'bfloat16', 'det': 'float16', 'seg': 'float16'}

STALE_VARIABLES = ('train_pipeline', 'test_pipeline', 'data_root',
                   'crop_size', 'pretrained', 'checkpoint', 'checkpoint_file',
                   'max_epochs', 'smlpnet_backbone')

# The budgets: data, sizes and iterations. `short`: a few minutes per run on
# one GPU; `tiny`: seconds on a CPU (a smoke test, nothing learns).
BUDGETS = {
    'short': {
        'cls': dict(iters=500, batch=128, val_batch=128, img=96, data=dict(
            num_classes=20, train_per_class=300, val_per_class=25, size=112,
            scale=(0.12, 0.45), clutter=8, occlusion=0.35)),
        'det': dict(iters=300, batch=16, val_batch=8, data=dict(
            num_train=1200, num_val=300, size=(320, 256), num_categories=14,
            max_objects=10, scale=(0.04, 0.3), clutter=10, overlap=0.3)),
        'seg': dict(iters=400, batch=16, val_batch=1, img=128, data=dict(
            num_train=1200, num_val=300, size=(128, 160), num_objects=(4, 10),
            num_object_classes=30, scale=(0.04, 0.3), colour_jitter=40)),
    },
    'tiny': {
        'cls': dict(iters=2, batch=4, val_batch=8, img=32, data=dict(
            num_classes=20, train_per_class=1, val_per_class=1, size=40,
            scale=(0.12, 0.45), clutter=8, occlusion=0.35)),
        'det': dict(iters=2, batch=2, val_batch=2, data=dict(
            num_train=4, num_val=2, size=(64, 64), num_categories=14,
            max_objects=10, scale=(0.04, 0.3), clutter=10, overlap=0.3),
            cfg_options={
                # an untrained model scores below the config's 0.05: keep
                # its detections, or CocoMetric has nothing to evaluate
                'model.test_cfg.rcnn.score_thr': 0.,
                # fewer RoIs (CPU time: mmcv's RoIAlign on a CPU)
                'model.train_cfg.rpn_proposal.max_per_img': 200,
                'model.train_cfg.rcnn.sampler.num': 32,
                'model.test_cfg.rpn.max_per_img': 100,
                'model.test_cfg.rcnn.max_per_img': 20,
            }),
        'seg': dict(iters=2, batch=2, val_batch=1, img=64, data=dict(
            num_train=4, num_val=2, size=(64, 80), num_objects=(4, 10),
            num_object_classes=30, scale=(0.04, 0.3), colour_jitter=40)),
    },
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.split('\n')[2:]))
    parser.add_argument(
        '--tasks', nargs='+', choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument(
        '--backbones', nargs='+',
        choices=sorted({b for c in CONFIGS.values() for b in c}),
        help='default: smlpnet-t, swin-t and (cls) convnext-t; '
        f'{BN_VARIANT} (det, seg) is sMLPNet-T with trained BatchNorm '
        'statistics. A backbone a task has no config for is skipped.')
    parser.add_argument(
        '--budget', choices=list(BUDGETS), default='short',
        help='data, image and batch sizes and iterations: short (default, '
        'one GPU) or tiny (a CPU smoke test)')
    parser.add_argument(
        '--iters', type=int, help='training iterations of every run '
        '(default: the budget\'s; short: cls 500, det 300, seg 400)')
    parser.add_argument(
        '--evals', type=int, default=4,
        help='evaluations per run, evenly spaced, the last at the end '
        '(default 4)')
    parser.add_argument(
        '--out-dir', default=osp.join('work_dirs', 'learning_check'),
        help='the charts, the table and learning.json go here')
    parser.add_argument(
        '--work-dir', help='generated data and the runs (default: '
        'OUT_DIR/work)')
    parser.add_argument(
        '--device', choices=['cuda', 'cpu'], default='cuda',
        help='cuda (default; AMP) or cpu (no AMP)')
    parser.add_argument(
        '--jobs', type=int, default=1,
        help='runs trained at the same time (on the same GPU); default 1')
    parser.add_argument(
        '--workers', type=int, default=4,
        help='data-loader workers per run (default 4)')
    parser.add_argument(
        '--merge', nargs='+', metavar='JSON',
        help='train nothing: merge these learning.json files and write the '
        'charts and the table from them')
    args = parser.parse_args(argv)
    if args.iters is not None and args.iters < 1:
        parser.error(f'--iters must be >= 1, got {args.iters}')
    if args.evals < 1:
        parser.error(f'--evals must be >= 1, got {args.evals}')
    if args.jobs < 1:
        parser.error(f'--jobs must be >= 1, got {args.jobs}')
    return args


# ------------------------------------------------------------------ data ---
def make_data(task, root, spec):
    """Generate the task's dataset under ``root`` (kept if complete)."""
    sys.path.insert(0, REPO_ROOT)  # in a worker process
    done = osp.join(root, '.complete')
    if osp.isfile(done):
        return root
    if task == 'cls':
        from mmsmlp.datasets.synthetic import make_imagenet
        make_imagenet(root, seed=0, **spec)
    elif task == 'det':
        from mmsmlp.datasets.synthetic_coco import make_coco
        make_coco(root, seed=0, **spec)
    else:
        from mmsmlp.datasets.synthetic_ade20k import make_ade20k
        make_ade20k(root, seed=0, **spec)
    with open(done, 'w') as f:
        json.dump(spec, f)
    return root


def class_names(spec):
    from mmsmlp.datasets.synthetic import ALL_SHAPE_CLASSES
    return list(ALL_SHAPE_CLASSES[:spec['num_classes']])


# --------------------------------------------------------------- configs ---
def transforms(pipeline, kind):
    found = [t for t in pipeline if t['type'] == kind]
    if not found:
        raise KeyError(f'no {kind} in the pipeline '
                       f'{[t["type"] for t in pipeline]}')
    return found


def set_loaders(cfg, task, data_root, spec, budget, workers):
    for name in ('train', 'val', 'test'):
        loader = cfg[f'{name}_dataloader']
        loader.batch_size = budget['batch'] if name == 'train' else budget[
            'val_batch']
        loader.num_workers = workers
        loader.persistent_workers = workers > 0
        dataset = loader.dataset
        dataset.data_root = data_root + ('/' if task == 'det' else '')
        if task == 'cls':
            dataset.metainfo = dict(classes=class_names(spec))


def scale_schedule(cfg, full_iters, iters):
    """The config's schedulers over ``full_iters`` iterations, squeezed into
    ``iters``: begin, end and milestones at the same fractions."""
    epoch_iters = full_iters / cfg.train_cfg.get('max_epochs', 1)

    def to_budget(value, unit):
        return int(round(min(value * unit, full_iters) / full_iters * iters))

    from mmengine.config import ConfigDict
    schedulers = cfg.param_scheduler
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    scaled = []
    for s in schedulers:
        s = ConfigDict(s)
        unit = epoch_iters if s.get('by_epoch', True) else 1
        s['begin'] = to_budget(s.get('begin', 0), unit)
        s['end'] = max(s['begin'] + 1,
                       to_budget(s.get('end', math.inf), unit))
        if 'milestones' in s:
            s['milestones'] = [to_budget(m, unit) for m in s['milestones']]
        if 'T_max' in s:
            s['T_max'] = s['end'] - s['begin']
        for key in ('t_initial', 'warmup_t', 'delay'):  # TimmCosineLR
            if key in s:
                s[key] = to_budget(s[key], unit)
        s['by_epoch'] = False
        s.pop('convert_to_iter_based', None)
        scaled.append(s)
    cfg.param_scheduler = scaled


def full_schedule_iters(cfg, task):
    """Iterations of the config's full schedule at its total batch size."""
    if task == 'seg':
        return cfg.train_cfg.max_iters
    images = IMAGENET_TRAIN if task == 'cls' else COCO_TRAIN
    per_epoch = math.ceil(images / cfg.auto_scale_lr.base_batch_size)
    return cfg.train_cfg.max_epochs * per_epoch


def derive_config(task, backbone, data_root, spec, budget, args):
    """The shipped config of ``backbone`` for ``task`` with the budget's
    overrides (see the module's docstring), as an mmengine Config."""
    from mmengine.config import Config
    base = CONFIGS[task][backbone]
    if '::' in base:
        # Config.fromfile takes a file: this one only inherits the package's
        stub = osp.join(args.work_dir, 'configs', f'{task}_{backbone}.py')
        os.makedirs(osp.dirname(stub), exist_ok=True)
        with open(stub, 'w') as f:
            f.write(f'_base_ = {base!r}\n')
        base = stub
    cfg = Config.fromfile(base)
    iters = budget['iters']
    if task == 'seg' and 'auto_scale_lr' not in cfg:
        # mmseg's recipe: 8 GPUs x 2 images, lr 6e-5 (its config does not
        # say so in auto_scale_lr)
        cfg.auto_scale_lr = dict(enable=False, base_batch_size=16)
    full_iters = full_schedule_iters(cfg, task)
    scale_schedule(cfg, full_iters, iters)
    for hook in cfg.get('custom_hooks', None) or []:
        if hook['type'] in ('EMAHook', 'RawAndEMAHook'):
            # the same EMA horizon as a fraction of the schedule (at most
            # 0.5: the EMA wants a momentum in (0, 1))
            hook['momentum'] = min(0.5,
                                   hook['momentum'] * full_iters / iters)

    backbone_cfg = cfg.model.backbone
    if task != 'cls':
        backbone_cfg.init_cfg = None  # from scratch, nothing downloaded
    if backbone == BN_VARIANT:
        backbone_cfg.norm_eval = False
    set_loaders(cfg, task, data_root, spec, budget, args.workers)
    train_pipeline = cfg.train_dataloader.dataset.pipeline
    test_pipelines = [cfg.val_dataloader.dataset.pipeline,
                      cfg.test_dataloader.dataset.pipeline]
    if task == 'cls':
        s = budget['img']
        num_classes = spec['num_classes']
        cfg.model.head.num_classes = num_classes
        cfg.data_preprocessor.num_classes = num_classes
        if backbone_cfg.type in ('SMLPNet', 'SwinTransformer'):
            backbone_cfg.img_size = s
        if backbone_cfg.type == 'SwinTransformer' and s < 224:
            # below 224, Swin's last stages are smaller than its 7x7
            # windows: padded to them (mmpretrain's option for such maps)
            backbone_cfg.pad_small_map = True
        for t in transforms(train_pipeline, 'RandomResizedCrop'):
            t.scale = s
        for pipeline in test_pipelines:
            for t in transforms(pipeline, 'ResizeEdge'):
                t.scale = int(round(s * t.scale / 224))
            for t in transforms(pipeline, 'CenterCrop'):
                t.crop_size = s
    elif task == 'det':
        size = tuple(spec['size'])  # (w, h): no resizing of the images
        for pipeline in [train_pipeline] + test_pipelines:
            for t in transforms(pipeline, 'Resize'):
                t.scale = size
        ann = osp.join(data_root, 'annotations', 'instances_val2017.json')
        cfg.val_evaluator.ann_file = cfg.test_evaluator.ann_file = ann
    else:
        c = budget['img']  # crops of c x c instead of 512 x 512
        cfg.model.data_preprocessor.size = (c, c)
        if backbone_cfg.type == 'SMLPNet':
            backbone_cfg.img_size = (c, c)
        for t in transforms(train_pipeline, 'RandomResize'):
            t.scale = (4 * c, c)  # (2048, 512)
        for t in transforms(train_pipeline, 'RandomCrop'):
            t.crop_size = (c, c)
        for pipeline in test_pipelines:
            for t in transforms(pipeline, 'Resize'):
                t.scale = (4 * c, c)
        if cfg.model.test_cfg.get('mode') == 'slide':
            stride = cfg.model.test_cfg.stride
            cfg.model.test_cfg.crop_size = (c, c)
            cfg.model.test_cfg.stride = tuple(
                max(1, int(round(v * c / 512))) for v in stride)

    cfg.train_cfg = dict(
        type='IterBasedTrainLoop',
        max_iters=iters,
        val_interval=max(1, math.ceil(iters / args.evals)))
    cfg.val_cfg = dict(type='ValLoop')
    cfg.test_cfg = dict(type='TestLoop')
    interval = max(1, iters // 60)
    cfg.log_processor = dict(
        type='LogProcessor', window_size=interval, by_epoch=False)
    cfg.default_hooks.logger = dict(
        type='LoggerHook', interval=interval, log_metric_by_epoch=False)
    # no checkpoints: the evaluations during training are the results
    checkpoint = cfg.default_hooks.checkpoint
    cfg.default_hooks.checkpoint = dict(
        type=checkpoint.type, interval=-1, by_epoch=False, save_last=False)
    if args.device == 'cuda':
        dtype = AMP_DTYPE[task]
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.dtype = dtype
        if dtype == 'float16':
            cfg.optim_wrapper.loss_scale = 'dynamic'
    cfg.randomness = dict(seed=0)
    # the budget's own settings (the tiny one: CPU time)
    cfg.merge_from_dict(budget.get('cfg_options', {}))
    # variables of the bases that the Runner does not read and that no
    # longer describe the run (sizes, data root, checkpoints, epochs)
    for key in STALE_VARIABLES:
        cfg.pop(key, None)
    return cfg


# ------------------------------------------------------------------ runs ---
def run_one(job, args):
    """Train one (task, backbone) through tools/train.py; return its
    record (the curves from scalars.json)."""
    task, backbone, cfg_path, run_dir = job
    env = dict(os.environ)
    env['PYTHONPATH'] = REPO_ROOT + (
        os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    if args.device == 'cpu':
        env['CUDA_VISIBLE_DEVICES'] = ''
        env.setdefault('OMP_NUM_THREADS',
                       str(max(1, (os.cpu_count() or 1) // args.jobs)))
    cmd = [sys.executable, osp.join(REPO_ROOT, 'tools', 'train.py'),
           cfg_path, '--work-dir', run_dir, '--auto-scale-lr']
    log_path = osp.join(run_dir, 'train.log')
    start = time.time()
    with open(log_path, 'w') as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT,
                               env=env, cwd=REPO_ROOT)
    record = dict(task=task, backbone=backbone,
                  config=CONFIGS[task][backbone].replace(REPO_ROOT + '/', ''),
                  derived_config=cfg_path, work_dir=run_dir,
                  wall_s=round(time.time() - start, 1), returncode=code)
    if code != 0:
        with open(log_path) as f:
            record['error'] = f.read()[-3000:]
        return record
    record.update(read_curves(run_dir, task))
    return record


def read_curves(run_dir, task):
    """Loss, learning rate and the evaluator's metrics over iterations from
    the run's ``vis_data/scalars.json``."""
    paths = sorted(glob.glob(osp.join(run_dir, '*', 'vis_data',
                                      'scalars.json')))
    if not paths:
        raise FileNotFoundError(f'no */vis_data/scalars.json in {run_dir}')
    with open(paths[-1]) as f:
        rows = [json.loads(line) for line in f]
    train = [r for r in rows if 'loss' in r]
    metrics = {
        key: [[r['step'], r[key]] for r in rows if key in r]
        for key in METRICS[task]
    }
    times = [r['time'] for r in train[1:] if 'time' in r]
    return dict(
        scalars=paths[-1],
        loss=[[r['step'], r['loss']] for r in train],
        peak_lr=max((r['lr'] for r in train if 'lr' in r), default=None),
        sec_per_iter=sum(times) / len(times) if times else None,
        metrics=metrics)


def run_all(args, on_result):
    """Generate the data, derive the configs and train; ``on_result`` gets
    the results so far whenever a run ends."""
    budgets = BUDGETS[args.budget]
    work_dir = args.work_dir
    os.makedirs(work_dir, exist_ok=True)
    specs = {t: dict(budgets[t]) for t in args.tasks}
    for spec in specs.values():
        if args.iters is not None:
            spec['iters'] = args.iters
    roots = {
        t: osp.join(work_dir, 'data', f'{t}_{args.budget}')
        for t in args.tasks
    }
    print(f'[learning_check] generating the data in {work_dir}/data')
    data = (args.tasks, [roots[t] for t in args.tasks],
            [specs[t]['data'] for t in args.tasks])
    if args.budget == 'tiny':  # a few images: not worth more processes
        list(map(make_data, *data))
    else:  # one process per task
        with ProcessPoolExecutor(max_workers=len(args.tasks)) as pool:
            list(pool.map(make_data, *data))
    jobs = []
    for task in args.tasks:
        backbones = args.backbones or DEFAULT_BACKBONES[task]
        for backbone in backbones:
            if backbone not in CONFIGS[task]:
                print(f'[learning_check] {task}: no {backbone} config, '
                      f'skipped')
                continue
            run_dir = osp.join(work_dir, 'runs', task, backbone)
            os.makedirs(run_dir, exist_ok=True)
            cfg = derive_config(task, backbone, roots[task],
                                specs[task]['data'], specs[task], args)
            cfg_path = osp.join(run_dir, 'config.py')
            cfg.dump(cfg_path)
            jobs.append((task, backbone, cfg_path, run_dir))
    meta = dict(
        budget=args.budget, device=args.device,
        gpu=gpu_name() if args.device == 'cuda' else None,
        tasks={
            t: dict(iters=specs[t]['iters'], batch=specs[t]['batch'],
                    img=specs[t].get('img'), data=specs[t]['data'],
                    amp=AMP_DTYPE[t] if args.device == 'cuda' else None)
            for t in args.tasks
        })
    results = dict(meta=meta, runs=[])
    print(f'[learning_check] {len(jobs)} runs, {args.jobs} at a time')
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(run_one, job, args): i
                   for i, job in enumerate(jobs)}
        for future in as_completed(futures):
            record = future.result()
            status = 'ok' if record['returncode'] == 0 else 'FAILED'
            print(f'[learning_check] {record["task"]} {record["backbone"]}: '
                  f'{status} in {record["wall_s"]} s ({record["work_dir"]})')
            if status != 'ok':
                print(record['error'])
            record['order'] = futures[future]
            results['runs'].append(record)
            results['runs'].sort(key=lambda r: r['order'])
            # what is finished is written at once (a run cut short by a
            # time limit leaves the others' results)
            on_result(results)
    return results


def gpu_name():
    try:
        import torch
        return torch.cuda.get_device_name(0)
    except Exception as e:  # reported, not fatal: the runs are what matter
        return f'unknown ({e})'


# --------------------------------------------------------------- outputs ---
def final(points):
    return points[-1][1] if points else None


def best(points):
    return max(v for _, v in points) if points else None


def table_rows(results):
    rows = []
    for r in results['runs']:
        row = dict(task=r['task'], backbone=r['backbone'], config=r['config'])
        tmeta = results['meta']['tasks'].get(r['task'], {})
        row.update(iters=tmeta.get('iters'), batch=tmeta.get('batch'))
        if r['returncode'] != 0:
            row['status'] = 'failed'
            rows.append(row)
            continue
        row['status'] = 'ok'
        for key in METRICS[r['task']]:
            row[f'final {key}'] = final(r['metrics'][key])
            row[f'best {key}'] = best(r['metrics'][key])
        losses = [v for _, v in r['loss'][-3:]]
        row['final loss'] = sum(losses) / len(losses) if losses else None
        row['peak lr'] = r['peak_lr']
        row['s/iter'] = r['sec_per_iter']
        row['wall s'] = r['wall_s']
        rows.append(row)
    return rows


def fmt(value):
    if value is None:
        return ''
    if isinstance(value, float):
        return f'{value:.4g}'
    return str(value)


def write_table(results, out_dir):
    rows = table_rows(results)
    columns = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(osp.join(out_dir, 'learning.csv'), 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    meta = results['meta']
    lines = [
        '# Learning check', '',
        f'Budget `{meta["budget"]}` on {meta["device"]}'
        + (f' ({meta["gpu"]})' if meta.get('gpu') else '') +
        '; metrics as logged by the evaluators (top-1 and mIoU in %, '
        'COCO mAP in [0, 1]); final loss: mean of the last 3 logged.', ''
    ]
    for task in dict.fromkeys(r['task'] for r in rows):
        task_rows = [r for r in rows if r['task'] == task]
        cols = ['backbone', 'status'] + [
            f'{which} {key}' for key in METRICS[task]
            for which in ('final', 'best')
        ] + ['final loss', 'peak lr', 's/iter', 'wall s']
        t = meta['tasks'].get(task, {})
        lines += [
            f'## {TASK_NAMES[task]}', '',
            f'{t.get("iters")} iterations of batch {t.get("batch")}, '
            f'AMP {t.get("amp") or "off"}; data: `{t.get("data")}`', '',
            '| ' + ' | '.join(cols) + ' |',
            '|' + '---|' * len(cols)
        ]
        for r in task_rows:
            lines.append('| ' + ' | '.join(fmt(r.get(c)) for c in cols) +
                         ' |')
        lines.append('')
    with open(osp.join(out_dir, 'learning.md'), 'w') as f:
        f.write('\n'.join(lines))
    return rows


def plot(results, out_dir):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    paths = []
    for task in dict.fromkeys(r['task'] for r in results['runs']):
        runs = [r for r in results['runs']
                if r['task'] == task and r['returncode'] == 0]
        keys = METRICS[task][:2]
        fig, axes = plt.subplots(1, 1 + len(keys),
                                 figsize=(5 * (1 + len(keys)), 4))
        for r in runs:
            steps, values = zip(*r['loss']) if r['loss'] else ((), ())
            axes[0].plot(steps, values, label=r['backbone'])
            for ax, key in zip(axes[1:], keys):
                points = r['metrics'][key]
                if points:
                    xs, ys = zip(*points)
                    ax.plot(xs, ys, marker='o', label=r['backbone'])
        axes[0].set_title('training loss')
        axes[0].set_yscale('log')
        for ax, key in zip(axes[1:], keys):
            ax.set_title(f'{key} (val)')
        for ax in axes:
            ax.set_xlabel('iteration')
            ax.grid(alpha=0.3)
            ax.legend()
        t = results['meta']['tasks'].get(task, {})
        fig.suptitle(f'{TASK_NAMES[task]}: {t.get("iters")} iterations of '
                     f'batch {t.get("batch")} from scratch')
        fig.tight_layout()
        path = osp.join(out_dir, f'learning_{task}.png')
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def merge(paths):
    merged = dict(meta=dict(tasks={}), runs=[])
    for path in paths:
        with open(path) as f:
            results = json.load(f)
        for key, value in results['meta'].items():
            if key == 'tasks':
                merged['meta']['tasks'].update(value)
            elif merged['meta'].setdefault(key, value) != value:
                merged['meta'][key] = f'{merged["meta"][key]}, {value}'
        done = {(r['task'], r['backbone']) for r in results['runs']}
        merged['runs'] = [
            r for r in merged['runs']
            if (r['task'], r['backbone']) not in done
        ] + results['runs']
    return merged


def write_outputs(results, out_dir):
    """learning.json, the table and the charts in ``out_dir``."""
    with open(osp.join(out_dir, 'learning.json'), 'w') as f:
        json.dump(results, f, indent=1)
    rows = write_table(results, out_dir)
    plots = plot(results, out_dir)
    return rows, plots


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, REPO_ROOT)  # this checkout's mmsmlp for the configs
    out_dir = osp.abspath(args.out_dir)
    os.makedirs(out_dir, exist_ok=True)
    if args.merge:
        results = merge(args.merge)
    else:
        args.work_dir = osp.abspath(args.work_dir or osp.join(out_dir, 'work'))
        results = run_all(args, lambda r: write_outputs(r, out_dir))
    rows, plots = write_outputs(results, out_dir)
    print(f'[learning_check] wrote {out_dir}/learning.md, learning.csv, '
          f'learning.json and ' + ', '.join(osp.basename(p) for p in plots))
    with open(osp.join(out_dir, 'learning.md')) as f:
        print(f.read())
    failed = [f'{r["task"]} {r["backbone"]}' for r in rows
              if r['status'] != 'ok']
    if failed:
        print(f'[learning_check] failed runs: {", ".join(failed)}')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

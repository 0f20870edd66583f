# Copyright (c) mmsmlp contributors. All rights reserved.
"""Training speed through mmengine's Runner against the bare network, in one
call, on generated ImageNet-format JPEGs of ImageNet's size.

    python tools/analysis_tools/train_speed.py \\
        configs/smlpnet/smlpnet-t_8xb128_in1k.py --workers 12 --iters 300 \\
        --peer mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py
    python tools/analysis_tools/train_speed.py CONFIG --variant upstream \\
        optim_wrapper.constructor=DefaultOptimWrapperConstructor
    python tools/analysis_tools/train_speed.py CONFIG --profile
    # one GPU call: bare step, tools/train.py end to end, tools/train.py
    # profiled, the same run profiled in this process
    PYTHONUNBUFFERED=1 python tools/analysis_tools/train_speed.py CONFIG \\
        --workers 12 --quick --out-dir OUT

For the config (and the ``--peer`` config), each measured in this call:

- ``bare``: the network's training step alone, as ``benchmark.py`` times it
  (the batch already on the GPU, channels_last, forward, cross-entropy,
  backward, AdamW in one parameter group, the autocast dtype of ``--amp``),
  and bare inference at the validation batch size in the validation loop's
  precision (fp32 unless the config's ``val_cfg`` has ``fp16=True``).
- ``train_step``: the config's ``model.train_step`` (data preprocessor with
  Mixup/CutMix, the config's loss, optimizer wrapper and AMP) on one batch
  kept in pinned host memory: an iteration without the loader and hooks.
- ``loader``: the training data loader alone, sustained: batches after the
  ones the workers had prefetched (``workers x prefetch_factor``), and
  the validation loader alike.
- ``transforms``: each training transform's milliseconds per image, in
  this process on one core as a worker runs them, and the config's collate
  function's (per image, over batches of the transformed images).
- ``gpu-augment`` (a ``configs/gpuaug/`` config): the host and GPU milliseconds
  of ``GPUAugClsDataPreprocessor.augment`` (RandAugment and RandomErasing
  on the GPU) on one batch of the training pipeline.
- ``e2e``: ``tools/train.py`` in a subprocess on the same settings, each
  iteration timed by a hook (no synchronisation added). ``steady`` leaves
  out the first ``--warmup-iters`` iterations and the first
  ``--restart-iters`` of every later epoch (the loader refilling after an
  epoch end; ImageNet's 10,000-iteration epochs make those rare); ``all``
  keeps the epoch restarts. Then the validation loop once, images/s after
  its first ``--val-skip`` batches.

Generated data (``make_imagenet``): ``--images`` distinct training JPEGs
with a long side of 400-500 px (``--long-side``), listed ``--repeats`` times
in the annotation file so that epochs are long (the page cache holds the
files either way); validation likewise.

Profiles of the end-to-end run (the same derived config, hooks, logging
and checkpoints), by :class:`ProfileHook` after ``--warmup-iters``
iterations: ``--profile-iters`` iterations unprofiled and timed (with the
cores kept busy: host, this process by thread, the loader's workers), as
many under torch.profiler, each cut into ranges (loader wait,
before_train_iter hooks, data preprocessor, forward + loss, backward,
optimizer step, each after_train_iter hook by name), as many under
cProfile; with the process's threads, workers, start method and load
average. ``e2e-profile`` profiles the ``tools/train.py`` subprocess,
``profile`` (or ``--profile``) the same run in this process (mmengine's
Runner as tools/train.py builds it); with both, a table sets them side by
side with the unprofiled run. Each writes ``<label>.json`` and
``<label>.txt`` (label ``<run>_e2e-profile`` / ``<run>_profile``) to
``--out-dir`` (else the run's work dir), before its run ends.

``--out-dir``: ``train_speed.json`` is written after each part, and each
``tools/train.py`` run's output goes to a log there; ``--e2e-timeout``
stops a ``tools/train.py`` run that takes longer (what was written stays).
``--quick``: ``--parts bare e2e e2e-profile profile --iters 200
--e2e-timeout 200``, about 5 minutes on one H200 with 12 workers.
``--gpus N``: the ``tools/train.py`` runs on N GPUs, as
``tools/dist_train.sh`` runs them (``--workers`` per GPU; N=1: one GPU
under DDP); their images/s count all of them and ``e2e / bare`` is
against N bare steps.
"""
import argparse
import copy
import cProfile
import gc
import glob
import importlib
import io
import json
import os
import os.path as osp
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter

import mmsmlp  # noqa: F401,I001  isort:skip
import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import build_optim_wrapper
from mmengine.registry import FUNCTIONS, HOOKS, MODELS, init_default_scope
from mmengine.runner import Runner

from mmsmlp.datasets import CropBatch, make_imagenet
from mmsmlp.models.gpu_augment import augment_batch
from mmsmlp.models.gpu_crop import resize_crops
from mmsmlp.models.utils.cuda_graph import GraphedTraining

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TIMES_FILE = 'train_speed_times.json'
LOG_INTERVAL = 50  # the end-to-end runs' LoggerHook interval


@HOOKS.register_module()
class IterTimestampHook(Hook):
    """Records ``time.perf_counter()`` before and after every training and
    validation iteration (no device synchronisation), and writes them to
    ``<work_dir>/train_speed_times.json`` at the end of the run. Used by
    this tool's end-to-end runs."""
    priority = 'LOWEST'

    def __init__(self):
        self.train, self.val, self.val_before = [], [], []
        self.gc = []  # full collections: (start, end, objects collected)
        self._before = self._gc_start = None

    def _on_gc(self, phase, info):
        if info['generation'] != 2:
            return
        if phase == 'start':
            self._gc_start = time.perf_counter()
        elif self._gc_start is not None:
            self.gc.append(
                (self._gc_start, time.perf_counter(), info['collected']))

    def before_run(self, runner):
        gc.callbacks.append(self._on_gc)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self._before = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.train.append(
            (runner.epoch, batch_idx, self._before, time.perf_counter()))

    def before_val_epoch(self, runner):
        self.val.append(('start', time.perf_counter()))

    def before_val_iter(self, runner, batch_idx, data_batch=None):
        self.val_before.append((batch_idx, time.perf_counter()))

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None):
        self.val.append((batch_idx, time.perf_counter()))

    def after_run(self, runner):
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        if not is_main_process():  # (--gpus) rank 0's times
            return
        with open(osp.join(runner.work_dir, TIMES_FILE), 'w') as f:
            json.dump(dict(train=self.train, val=self.val,
                           val_before=self.val_before, gc=self.gc), f)


# --- settings ---------------------------------------------------------------
def prepare_data(args):
    """The generated dataset and annotation files listing its images
    ``--repeats`` times; returns (root, train ann file, val ann file)."""
    root = args.data
    if not osp.exists(osp.join(root, 'meta', 'val.txt')):
        t = time.perf_counter()
        make_imagenet(root, 10, args.images // 10, args.val_images // 10,
                      tuple(args.long_side), seed=0)
        print(f'[data] wrote {args.images} + {args.val_images} JPEGs, long '
              f'side {args.long_side[0]}-{args.long_side[1]} px, to {root} '
              f'in {time.perf_counter() - t:.0f} s', flush=True)
    anns = []
    for split in ('train', 'val'):
        with open(osp.join(root, 'meta', f'{split}.txt')) as f:
            lines = f.readlines()
        ann = osp.join(root, 'meta', f'{split}_x{args.repeats}.txt')
        with open(ann, 'w') as f:
            f.writelines(lines * args.repeats)
        anns.append(ann)
    return root, anns[0], anns[1]


def count_lines(path):
    """The images an annotation file lists (one per line)."""
    with open(path) as f:
        return sum(1 for _ in f)


def mean_file_size(root):
    with open(osp.join(root, 'meta', 'train.txt')) as f:
        paths = [line.split()[0] for line in f][:500]
    return sum(osp.getsize(osp.join(root, 'train', p))
               for p in paths) / len(paths) / 1024


def load_config(path, args, options=None, ann_files=None):
    """The config with the data, workers, batch size and AMP of this call.
    ``PACKAGE::PATH`` names a config shipped in an OpenMMLab package."""
    if '::' in path:  # Config.fromfile reads files only
        package, rel = path.split('::', 1)
        module = importlib.import_module(package)
        path = osp.join(osp.dirname(module.__file__), '.mim', 'configs', rel)
    cfg = Config.fromfile(path)
    root, train_ann, val_ann = ann_files
    for split, ann in (('train', train_ann), ('val', val_ann),
                       ('test', val_ann)):
        loader = cfg[f'{split}_dataloader']
        loader.dataset.data_root = root
        loader.dataset.ann_file = ann
        loader.dataset.data_prefix = split if split != 'test' else 'val'
        loader.dataset.pop('split', None)
        loader.dataset.pop('indices', None)
        loader.num_workers = args.workers
        loader.persistent_workers = args.workers > 0
        if args.workers == 0:
            loader.pop('prefetch_factor', None)
        if args.batch:
            loader.batch_size = args.batch
    if args.amp != 'none':
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.dtype = args.amp
        if args.amp == 'bfloat16' and args.bf16_loss_scale == 'none':
            # bf16 needs no loss scaling (fp32's exponent range); a setting
            # of the config or the options wins
            cfg.optim_wrapper.setdefault('loss_scale', dict(enabled=False))
    cfg.setdefault('default_scope', 'mmpretrain')
    if options:  # last: options win over this call's settings too
        cfg.merge_from_dict(options)
    return cfg


def autocast(args, enabled=True):
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    dtype = {'bfloat16': torch.bfloat16, 'float16': torch.float16,
             'none': torch.float32}[args.amp]
    return torch.autocast(device, dtype=dtype,
                          enabled=enabled and dtype != torch.float32)


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn, iters, warmup):
    for _ in range(warmup):
        fn()
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return (time.perf_counter() - start) / iters


def device():
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def build_model(cfg):
    init_default_scope(cfg.default_scope)
    model_cfg = copy.deepcopy(cfg.model)
    if 'data_preprocessor' not in model_cfg and 'data_preprocessor' in cfg:
        model_cfg.data_preprocessor = cfg.data_preprocessor
    return MODELS.build(model_cfg).to(device())


# --- bare step, train_step, loader -----------------------------------------
def measure_bare(cfg, args):
    """The network's step alone (benchmark.py's), and bare inference."""
    model = build_model(cfg).to(memory_format=torch.channels_last)
    batch = cfg.train_dataloader.batch_size
    size = args.size
    x = torch.randn(batch, 3, size, size, device=device()).to(
        memory_format=torch.channels_last)
    num_classes = cfg.model.head.num_classes
    y = torch.randint(0, num_classes, (batch, ), device=device())
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def train():
        with autocast(args):
            loss = F.cross_entropy(model(x, mode='tensor').float(), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    train_s = timed(train, args.bare_iters, args.bare_warmup)
    result = {}
    if graphs_backbone(cfg):
        # as the config trains it: the backbone through CUDA graphs
        # (CUDAGraphHook); the eager step is kept beside it
        result['bare_train_eager'] = batch / train_s
        GraphedTraining.wrap(model.backbone)
        train_s = timed(train, args.bare_iters, args.bare_warmup)
        GraphedTraining.unwrap(model.backbone)  # its graphs' memory freed
    model.eval()
    val_batch = cfg.val_dataloader.batch_size
    xv = torch.randn(val_batch, 3, size, size, device=device()).to(
        memory_format=torch.channels_last)
    val_fp16 = bool(cfg.get('val_cfg', {}).get('fp16', False))

    def infer():
        with torch.no_grad(), torch.autocast(
                device().type, dtype=torch.float16, enabled=val_fp16):
            model(xv, mode='tensor')

    infer_s = timed(infer, args.bare_iters, args.bare_warmup)
    return dict(result, bare_train=batch / train_s,
                bare_infer=val_batch / infer_s,
                val_precision='fp16' if val_fp16 else 'fp32')


def graphs_backbone(cfg):
    """Whether the config trains its backbone through CUDA graphs."""
    return torch.cuda.is_available() and any(
        h.get('type') == 'CUDAGraphHook' and h.get('enabled', True)
        for h in cfg.get('custom_hooks', None) or [])


def build_loader(cfg, split='train'):
    init_default_scope(cfg.default_scope)
    return Runner.build_dataloader(
        copy.deepcopy(cfg[f'{split}_dataloader']), seed=0)


def measure_train_step(cfg, args):
    """The config's train_step on one batch kept in (pinned) host memory."""
    model = build_model(cfg)
    optim_wrapper = build_optim_wrapper(model, copy.deepcopy(
        cfg.optim_wrapper))
    model.train()
    batch = next(iter(build_loader(cfg)))

    def step():
        model.train_step(copy.copy(batch), optim_wrapper=optim_wrapper)

    seconds = timed(step, args.bare_iters, args.bare_warmup)
    return dict(train_step=cfg.train_dataloader.batch_size / seconds)


def measure_loader(cfg, args, split='train'):
    """Sustained images/s of a data loader: the batches the workers had
    prefetched are consumed before the clock starts (epoch restarts, if the
    dataset is short, count)."""
    loader = build_loader(cfg, split)
    prefetch = (loader.prefetch_factor or 2) if loader.num_workers else 0
    skip = loader.num_workers * prefetch + 2

    def epochs():  # a short dataset starts its next epoch
        while True:
            yield from loader

    batches = epochs()
    for _ in range(skip):
        next(batches)
    images, start = 0, time.perf_counter()
    for _ in range(args.loader_batches):
        images += len(next(batches)['data_samples'])
    rate = images / (time.perf_counter() - start)
    batches.close()  # drops the loader's iterator: ends the workers
    return rate


def train_collate(cfg):
    """The collate function of the config's training loader."""
    return FUNCTIONS.get(
        cfg.train_dataloader.get('collate_fn',
                                 {}).get('type', 'default_collate'))


def time_transforms(cfg, args):
    """Milliseconds per image of each training transform, in this process
    on one core (as a worker runs them)."""
    import cv2
    cv2.setNumThreads(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    init_default_scope(cfg.default_scope)
    from mmengine.registry import DATASETS
    dataset = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    transforms = dataset.pipeline.transforms
    totals = [0.0] * (len(transforms) + 1)
    collate = train_collate(cfg)
    n = args.transform_images
    batch = min(n, cfg.train_dataloader.batch_size)
    n = n // batch * batch  # whole batches
    samples = []
    for i in range(n):
        results = dataset.get_data_info(i % len(dataset))
        for k, t in enumerate(transforms):
            start = time.perf_counter()
            results = t(results)
            totals[k] += time.perf_counter() - start
        samples.append(results)
        if len(samples) == batch:
            collate(samples)  # timed the second time, as in a long-running
            start = time.perf_counter()  # worker (crop_collate's caches)
            collate(samples)
            totals[-1] += time.perf_counter() - start
            samples = []
    names = [type(t).__name__ for t in transforms]
    names.append(f'{collate.__name__} (batches of {batch})')
    costs = [(name, s / n * 1e3) for name, s in zip(names, totals)]
    torch.set_num_threads(threads)
    return costs


def time_gpu_augment(cfg, args):
    """Milliseconds of the data preprocessor's ``augment`` (the GPU
    augmentation path's RandAugment and RandomErasing; with the GPU crop
    path, and apart, the crops' resize and flip before it) on one batch of
    the config's training pipeline, already on the device: the host time of the
    call (launching its kernels) and its device time (CUDA events around
    it, from an idle device; at least the host time when the host bounds
    it). Medians of ``--augment-iters`` calls after 3 warm-up calls. On
    CUDA, the host synchronisations of one more call are counted (torch's
    sync debug mode; there should be none)."""
    init_default_scope(cfg.default_scope)
    from mmengine.registry import DATASETS
    pre = build_model(cfg).data_preprocessor
    if not hasattr(pre, 'augment'):
        raise ValueError(f'--parts gpu-augment: the data preprocessor of '
                         f'{cfg.filename} ({type(pre).__name__}) has no '
                         'augment(); use a configs/gpuaug/ config')
    dataset = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    items = [dataset[i % len(dataset)]
             for i in range(cfg.train_dataloader.batch_size)]
    collate = train_collate(cfg)
    batch = collate(items)
    inputs = pre.cast_data(batch['inputs'])
    samples = batch['data_samples']
    result = dict(augment_batch=len(items))
    if isinstance(inputs, CropBatch):  # the GPU crop path: the resize
        result.update(_timed_calls('resize', lambda: resize_crops(inputs),
                                   args.augment_iters))
        inputs = resize_crops(inputs)
    result.update(_timed_calls('augment',
                               lambda: pre.augment(inputs, samples),
                               args.augment_iters))
    if getattr(pre, 'graph_augment', False):  # and the grouped ops
        pre._augment = augment_batch
        result.update(_timed_calls('grouped',
                                   lambda: pre.augment(inputs, samples),
                                   args.augment_iters))
    return result


def is_sync_warning(message) -> bool:
    """Whether a warning is torch.cuda's sync debug mode reporting a host
    synchronisation (c10's ``warn_or_error_on_sync``). Setting the mode
    warns that it is a prototype that "does not yet detect all synchronizing
    operations": not a synchronisation."""
    return 'called a synchronizing CUDA operation' in str(message)


def _timed_calls(name, fn, iters):
    """``{name}_host_ms``, ``{name}_gpu_ms`` (medians of ``iters`` calls
    after 3 warm-up calls) and ``{name}_syncs`` (host synchronisations of
    one more call, on CUDA) of ``fn``, as :func:`time_gpu_augment` says."""
    cuda = device().type == 'cuda'
    host, gpu = [], []
    for i in range(3 + iters):
        if cuda:
            torch.cuda.synchronize()
            start, end = (torch.cuda.Event(enable_timing=True)
                          for _ in range(2))
            start.record()
        t0 = time.perf_counter()
        fn()
        host.append((time.perf_counter() - t0) * 1e3)
        if cuda:
            end.record()
            torch.cuda.synchronize()
            gpu.append(start.elapsed_time(end))
    syncs = None
    if cuda:  # one more call, counting the host synchronisations in it
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            torch.cuda.set_sync_debug_mode('warn')
            try:
                fn()
            finally:
                torch.cuda.set_sync_debug_mode('default')
        syncs = sum(is_sync_warning(w.message) for w in caught)
    median = lambda v: statistics.median(v[3:]) if v else None  # noqa: E731
    return {f'{name}_host_ms': median(host), f'{name}_gpu_ms': median(gpu),
            f'{name}_syncs': syncs}


# --- end to end -------------------------------------------------------------
def e2e_config(name, config, options, args, ann_files, work_root, iters,
               profile=None):
    """The config of an end-to-end run: the config of this call trained for
    about ``iters`` iterations (whole epochs), validated once at the end,
    logged every 50 iterations, one checkpoint, and :class:`IterTimestampHook`
    last. ``profile`` (a label): :class:`ProfileHook` and its marks added
    after every other hook, profiling iterations ``--warmup-iters`` onwards.
    Returns (config, work dir, iterations per epoch)."""
    cfg = load_config(config, args, options, ann_files)
    batch = cfg.train_dataloader.batch_size
    train_images = count_lines(cfg.train_dataloader.dataset.ann_file)
    # drop_last or not: at least (each of --gpus processes gets its share)
    iters_per_epoch = train_images // (batch * (args.gpus or 1))
    epochs = max(1, round(iters / max(iters_per_epoch, 1)))
    cfg.train_cfg = dict(
        type='EpochBasedTrainLoop', max_epochs=epochs, val_interval=epochs)
    # the schedule's first epochs: a scheduler that begins later (the cosine
    # after 20 warm-up epochs) does not act in this run, and mmengine
    # refuses a begin beyond the last epoch
    cfg.param_scheduler = [
        s for s in (cfg.get('param_scheduler') or [])
        if not s.get('by_epoch', True) or s.get('begin', 0) < epochs
    ]
    cfg.default_hooks.logger.interval = LOG_INTERVAL
    cfg.default_hooks.checkpoint = dict(
        type='SafeCheckpointHook', interval=epochs)
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
        dict(type='IterTimestampHook')
    ]
    if profile:
        start = profile_start(args)
        needed = start + 3 * args.profile_iters + 1
        if needed > iters_per_epoch:
            raise ValueError(
                f'the profile from iteration {start} (--warmup-iters '
                f'{args.warmup_iters}, past the logging iterations) + 3 x '
                f'--profile-iters {args.profile_iters} + 1 = {needed} '
                'iterations do not fit '
                f'in the first epoch of {name} ({iters_per_epoch} '
                f'iterations of batch {batch}): lower them, or raise '
                '--repeats / --images')
    work_dir = osp.join(work_root, name if not profile else
                        f'{name}_{profile}')
    os.makedirs(work_dir, exist_ok=True)
    cfg.work_dir = work_dir
    if profile:
        label, out_dir = f'{name}_{profile}', args.out_dir or work_dir
        if osp.exists(osp.join(out_dir, label + '.json')):  # an older run's
            os.remove(osp.join(out_dir, label + '.json'))
        cfg.custom_hooks += profile_hooks(args, label, out_dir)
    imports = list(cfg.get('custom_imports', {}).get('imports', []))
    cfg.custom_imports = dict(
        imports=imports + ['train_speed'], allow_failed_imports=False)
    return cfg, work_dir, iters_per_epoch


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_e2e(name, config, options, args, ann_files, work_root, iters,
            profile=None):
    """tools/train.py on the derived config (profiled: ``profile='e2e-
    profile'``); returns the timing summary, the profile's if any.
    tools/train.py's output goes to ``<name>_<part>_tools_train.log`` in
    ``--out-dir`` (or the run's work dir); past ``--e2e-timeout`` seconds
    the run is stopped (its process group killed) and what it wrote kept."""
    cfg, work_dir, _ = e2e_config(name, config, options, args, ann_files,
                                  work_root, iters, profile)
    path = osp.join(work_dir, 'config.py')
    cfg.dump(path)
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [osp.join(ROOT, 'tools', 'analysis_tools'), ROOT] +
        [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    env['PYTHONUNBUFFERED'] = '1'  # a run cut short keeps its log
    out_dir = args.out_dir or work_dir
    os.makedirs(out_dir, exist_ok=True)
    log = osp.join(out_dir, f'{name}_{profile or "e2e"}_tools_train.log')
    start = time.perf_counter()
    timed_out = False
    # its own process group, ended with its loader workers on a timeout, or
    # when this process is stopped (SIGTERM, e.g. by `timeout`: a
    # SystemExit then, for the `finally`)
    terminate = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    times = osp.join(work_dir, TIMES_FILE)  # written at the run's end
    if osp.exists(times):
        os.remove(times)
    exit_wait = None  # seconds the process took to exit after its run
    exit_s = None  # the same, where it exited within --exit-wait
    command = [osp.join(ROOT, 'tools', 'train.py'), path, '--work-dir',
               work_dir]
    if args.gpus:  # as tools/dist_train.sh runs it
        command = ['-m', 'torch.distributed.run', '--nproc_per_node',
                   str(args.gpus), '--master_port', str(free_port())
                   ] + command + ['--launcher', 'pytorch']
    with open(log, 'w') as f:
        process = subprocess.Popen(
            [sys.executable] + command,
            env=env, stdout=f, stderr=subprocess.STDOUT,
            start_new_session=True)
        # polled each second; a process still running when the loop ends
        # (timed out, or slow to exit after its run) is killed below
        try:
            ended = None  # when the times file appeared (after_run)
            while process.poll() is None:
                time.sleep(1)
                now = time.perf_counter()
                if ended is None and osp.exists(times):
                    ended = now
                if ended is not None and now - ended > args.exit_wait:
                    exit_wait = now - ended
                    break
                if args.e2e_timeout is not None and \
                        now - start > args.e2e_timeout:
                    timed_out = True
                    break
            returncode = process.poll()
            if ended is not None and exit_wait is None:
                exit_s = time.perf_counter() - ended
        finally:
            signal.signal(signal.SIGTERM, terminate)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                returncode = process.wait()
    seconds = time.perf_counter() - start
    summary = dict(seconds=seconds)
    if exit_s is not None:  # to the polling's second
        summary['exit_s'] = exit_s
    if osp.exists(times):  # kept beside the log
        shutil.copy(times, osp.join(out_dir, f'{name}_{profile or "e2e"}_'
                                    f'{TIMES_FILE}'))
    if profile:
        summary['profile'] = read_profile(out_dir, f'{name}_{profile}')
    if timed_out:
        print(f'[{name}] tools/train.py ({profile or "e2e"}) stopped after '
              f'--e2e-timeout {args.e2e_timeout} s; its log: {log}',
              flush=True)
        summary['timed_out'] = True
        return summary
    if exit_wait is not None:
        print(f'[{name}] tools/train.py had not exited {exit_wait:.0f} s '
              'after its run ended (after_run); stopped (--exit-wait)',
              flush=True)
        summary['exit_not_done_s'] = exit_wait
    elif returncode:
        with open(log) as f:
            print(f.read()[-8000:])
        raise RuntimeError(f'tools/train.py failed for {name} (exit '
                           f'{returncode}); its output: {log}')
    summary.update(read_times(work_dir, cfg, args, summary.get('profile')))
    return summary


def read_times(work_dir, cfg, args, profile=None):
    """The summary of a run's IterTimestampHook record; the profiled
    iterations (and the one after them) left out."""
    with open(osp.join(work_dir, TIMES_FILE)) as f:
        times = json.load(f)
    exclude = None
    if profile:
        exclude = (profile['window']['first_iter'],
                   profile['window']['last_iter'] + 1)
    world = args.gpus or 1  # the batches of all the processes
    summary = summarize(times, cfg.train_dataloader.batch_size * world,
                        cfg.val_dataloader.batch_size * world, args, exclude,
                        count_lines(cfg.val_dataloader.dataset.ann_file))
    summary['iters'] = len(times['train'])
    summary['epochs'] = cfg.train_cfg.max_epochs
    return summary


def summarize(times, batch, val_batch, args, exclude=None, val_images=None):
    """Images/s and s/iter from the timestamps: ``steady`` without the first
    ``--warmup-iters`` iterations, the first ``--restart-iters`` of each
    later epoch and the iterations in ``exclude`` (first, last: those
    profiled); ``all`` with the epoch restarts. Validation: ``val`` over
    the full batches after the first ``--val-skip``; ``val_all`` with a
    last partial batch of the ``val_images`` (a new shape: with cuDNN's
    benchmark mode, its first run tunes the convolutions, over a second
    on one H200, once per process)."""
    train = times['train']
    steady, every, waits = [], [], []
    first_epoch = train[0][0] if train else 0
    for i in range(1, len(train)):
        epoch, inner, before, after = train[i]
        cycle = after - train[i - 1][3]
        if i < args.warmup_iters:
            continue
        if exclude and exclude[0] <= i <= exclude[1]:
            continue
        every.append(cycle)
        if epoch != first_epoch and inner < args.restart_iters:
            continue
        steady.append(cycle)
        waits.append(before - train[i - 1][3])
    out = {}
    if steady:
        s = sum(steady) / len(steady)
        out.update(e2e_steady=batch / s, iter_s=s,
                   data_wait_s=sum(waits) / len(waits),
                   steady_iters=len(steady))
    if every:
        out['e2e_all'] = batch * len(every) / sum(every)
        out['slowest_iter_s'] = max(every)
    first = max(args.warmup_iters, 1)  # the first timed iteration
    if len(train) > first:
        # Python's full garbage collections in the timed iterations (each
        # from the previous one's end to its own)
        start, end = train[first - 1][3], train[-1][3]
        spans = [b - a for a, b, _ in times.get('gc', ()) if start <= a < end]
        out.update(gc_full=len(spans), gc_full_s=sum(spans))
    val = [t for t in times['val'] if t[0] != 'start']
    skip = args.val_skip if args.val_skip is not None else args.workers + 1
    partial = (val_images or 0) % val_batch
    if partial and len(val) > skip + 1:
        span = val[-1][1] - val[skip][1]
        out['val_all'] = (val_batch * (len(val) - 2 - skip) + partial) / span
    full = val[:-1] if partial else val
    if len(full) > skip + 1:
        span = full[-1][1] - full[skip][1]
        out['val'] = val_batch * (len(full) - 1 - skip) / span
        # the wait for each batch after the previous one's end
        before = times.get('val_before', [])
        waits = [b[1] - a[1]
                 for a, b in zip(full[skip:-1], before[skip + 1:])]
        if waits:
            out['val_wait_s'] = sum(waits) / len(waits)
        # s/batch in each quarter of the timed batches (a slowdown shows)
        steps = [b[1] - a[1] for a, b in zip(full[skip:-1], full[skip + 1:])]
        quarter = len(steps) // 4
        if quarter:
            out['val_quarters_s'] = [
                sum(steps[i * quarter:(i + 1) * quarter]) / quarter
                for i in range(4)
            ]
    return out


# --- profile ----------------------------------------------------------------
# The profile's ranges of one training iteration, in their order (the
# after_train_iter hooks' ranges, named by the hooks, come after these).
LOADER_WAIT = 'loader wait'
BEFORE_HOOKS = 'before_train_iter hooks'
STEP_RANGES = ('train_step: optim_context', 'train_step: data preprocessor',
               'train_step: forward + loss',
               'train_step: parse losses + backward',
               'train_step: optimizer step',
               'train_step: after optimizer step (zero_grad, log vars)')
RANGE_PREFIX = 'runner: '
# A mark at each multiple of 10 of mmengine's priorities (0-100), added
# after every other hook, sits after the hooks of its priority or a higher
# one (register_hook), so that hooks of different priorities get ranges of
# their own (those of one priority share one).
MARK_PRIORITIES = tuple(range(0, 100, 10))


def profile_start(args):
    """Where the profile starts: after ``--warmup-iters`` iterations, or
    after the next iteration that logs (every ``LOG_INTERVAL``) if its
    windows would hold it: one log line in 5 profiled iterations would
    overstate LoggerHook's part tenfold."""
    start = args.warmup_iters
    end = start + 3 * args.profile_iters  # the windows: (start, end]
    if end // LOG_INTERVAL > start // LOG_INTERVAL and \
            3 * args.profile_iters < LOG_INTERVAL:
        start = (start // LOG_INTERVAL + 1) * LOG_INTERVAL
    return start


def profile_hooks(args, label, out_dir):
    """The custom hooks (dicts) that profile a run, to add after all
    others: the marks, then :class:`ProfileHook`."""
    return [
        dict(type='TrainSpeedProfileMark', priority=p)
        for p in MARK_PRIORITIES
    ] + [
        dict(type='TrainSpeedProfileHook', start=profile_start(args),
             count=args.profile_iters, out_dir=out_dir,
             label=label, rows=args.rows, priority='LOWEST')
    ]


class _Range:
    """One torch.profiler range open at a time (record_function)."""

    def __init__(self):
        self.current = None

    def switch(self, name):
        if self.current is not None:
            self.current.__exit__(None, None, None)
        self.current = None
        if name:
            self.current = torch.profiler.record_function(RANGE_PREFIX +
                                                          name)
            self.current.__enter__()


class _SyncSites:
    """Where the host waits for the GPU: torch.cuda's sync debug mode
    ('warn') with each warning counted by its Python call site (the
    innermost frames outside torch and warnings). CUDA only."""

    def __init__(self):
        self.counts = Counter()
        self._catch = self._show_other = None

    def _show(self, message, category, filename, lineno, file=None,
              line=None):
        if not is_sync_warning(message):
            self._show_other(message, category, filename, lineno, file, line)
            return
        frames = [
            f for f in traceback.extract_stack()[:-1]
            if f'{os.sep}torch{os.sep}' not in f.filename
            and not f.filename.endswith('warnings.py')
        ]
        self.counts[' <- '.join(
            '/'.join(f.filename.split(os.sep)[-2:]) + f':{f.lineno}'
            for f in reversed(frames[-3:]))] += 1

    def start(self):
        if not torch.cuda.is_available():
            return
        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        self._show_other = warnings.showwarning
        warnings.simplefilter('always')
        warnings.showwarning = self._show
        torch.cuda.set_sync_debug_mode('warn')

    def stop(self):
        if self._catch is not None:
            torch.cuda.set_sync_debug_mode('default')
            self._catch.__exit__(None, None, None)
            self._catch = None


def _overrides(hook, method):
    return getattr(type(hook), method, None) is not getattr(Hook, method)


@HOOKS.register_module(name='TrainSpeedProfileMark')
class ProfileMarkHook(Hook):
    """Opens the profile's range of the after_train_iter hooks between it
    and the next mark (or :class:`ProfileHook`) in the Runner's hook list;
    the first mark also the range of the before_train_iter hooks. Inactive
    until a ProfileHook names its range (ProfileHook.before_train)."""

    def __init__(self):
        self.profile_hook = None
        self.after_name = self.before_name = None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self.profile_hook is not None and self.before_name:
            self.profile_hook.switch(self.before_name)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self.profile_hook is not None and self.after_name:
            self.profile_hook.switch(self.after_name)


@HOOKS.register_module(name='TrainSpeedProfileHook')
class ProfileHook(Hook):
    """Profiles training iterations from ``start`` (iterations done) on, in
    this process (the in-process Runner or tools/train.py's):

    1. ``count`` iterations unprofiled, timed with a synchronisation at each
       end, with the CPU time of the host, this process (by thread name) and
       its child processes (the loader's workers);
    2. ``count`` under torch.profiler (CPU, and CUDA when available), each
       iteration cut into ranges: the loader wait, the before_train_iter
       hooks, train_step's parts (through module hooks on the data
       preprocessor and the model and optimizer step hooks, added for these
       iterations only) and the after_train_iter hooks by name (through
       :class:`ProfileMarkHook`);
    3. ``count`` under cProfile, with torch.cuda's sync debug mode counting
       the host's waits for the GPU by call site.

    Then writes ``<out_dir>/<label>.json`` (``self.summary``: the window,
    wall times, ranges, kernel time, op counts, top ATen ops, top Python
    functions, CPU use and the process's facts) and ``<label>.txt`` (the
    table it prints), ``<label>_ops.txt`` (torch.profiler's table) and
    ``<label>_python.txt`` (cProfile's). The run goes on unprofiled. It
    must be the last hook (priority LOWEST, added last)."""
    priority = 'LOWEST'

    def __init__(self, start, count, out_dir, label='profile', rows=30):
        if start < 1 or count < 1:
            raise ValueError(f'{type(self).__name__}: start ({start}) and '
                             f'count ({count}) must be at least 1')
        self.start, self.count, self.rows = start, count, rows
        self.out_dir, self.label = out_dir, label
        self.range = _Range()
        self.prof = self.cprof = None
        self.handles = []
        self.samples = {}
        self.summary = dict(label=label, window=dict(
            first_iter=start, last_iter=start + 3 * count - 1, count=count))

    # the iteration's ranges
    def switch(self, name):
        if self.prof is not None:
            self.range.switch(name)

    def before_train(self, runner):
        """Names the marks' ranges after the hooks that follow each."""
        hooks = runner.hooks
        if hooks[-1] is not self:
            raise RuntimeError(
                f'{type(self).__name__} must be the last hook (priority '
                f'LOWEST, added last); the last is {type(hooks[-1]).__name__}')
        segments, marks = [[]], []
        for hook in hooks[:-1]:
            if isinstance(hook, ProfileMarkHook):
                marks.append(hook)
                segments.append([])
            elif _overrides(hook, 'after_train_iter'):
                segments[-1].append(type(hook).__name__)
        self.after_step = STEP_RANGES[-1]
        if segments[0]:  # hooks of priority 0, before the first mark
            self.after_step += ' + after_train_iter: ' + ', '.join(
                segments[0])
        self.hook_ranges = []
        for mark, names in zip(marks, segments[1:]):
            mark.profile_hook = self
            mark.after_name = ('after_train_iter: ' + ', '.join(names)
                               if names else None)
            if names:
                self.hook_ranges.append(mark.after_name)
        before = [
            type(h).__name__ for h in hooks[hooks.index(marks[0]) + 1:-1]
            if _overrides(h, 'before_train_iter')
        ] if marks else []
        if marks:
            marks[0].before_name = BEFORE_HOOKS
        self.summary['before_train_iter_hooks'] = before
        self.summary['ranges_order'] = [LOADER_WAIT, BEFORE_HOOKS] + list(
            STEP_RANGES[:-1]) + [self.after_step] + self.hook_ranges

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.switch(STEP_RANGES[0])

    def _install(self, runner):
        """Module and optimizer hooks marking train_step's parts."""
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model

        def to(name):
            return lambda *args: self.switch(name)

        self.handles = [
            model.data_preprocessor.register_forward_pre_hook(
                to(STEP_RANGES[1])),
            model.data_preprocessor.register_forward_hook(to(STEP_RANGES[2])),
            model.register_forward_hook(to(STEP_RANGES[3])),
        ]
        wrappers = getattr(runner.optim_wrapper, 'optim_wrappers', None)
        for wrapper in (wrappers.values() if wrappers else
                        [runner.optim_wrapper]):
            self.handles += [
                wrapper.optimizer.register_step_pre_hook(to(STEP_RANGES[4])),
                wrapper.optimizer.register_step_post_hook(
                    to(self.after_step))
            ]

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        i = runner.iter + 1  # iterations done
        start, count = self.start, self.count
        if i == start:
            sync()
            self.summary['facts'] = process_facts(runner)
            self.summary['window']['epoch'] = runner.epoch
            self.samples['start'] = cpu_sample()
        elif i == start + count:
            sync()
            self.samples['unprofiled'] = cpu_sample()
            self.summary['cpu'] = cpu_usage(self.samples['start'],
                                            self.samples['unprofiled'], count)
            self.summary['wall_ms'] = self.summary['cpu'].pop('wall_ms')
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self._install(runner)
            self.prof = torch.profiler.profile(activities=activities)
            self.prof.__enter__()
            self.samples['profiled'] = time.perf_counter()
            self.switch(LOADER_WAIT)
        elif i == start + 2 * count:
            self.switch(None)
            sync()
            self.summary['profiled_wall_ms'] = (
                time.perf_counter() - self.samples['profiled']) / count * 1e3
            self.prof.__exit__(None, None, None)
            for handle in self.handles:
                handle.remove()
            self.handles = []
            self.report_profile()
            self.prof = None
            self.cprof = cProfile.Profile()
            self.sync_sites = _SyncSites()
            self.sync_sites.start()
            self.cprof.enable()
        elif i == start + 3 * count:
            self.cprof.disable()
            self.sync_sites.stop()
            self.summary['sync_sites'] = {
                site: c / count
                for site, c in self.sync_sites.counts.most_common(10)
            }
            self.report_cprofile()
            self.cprof = None
            self.summary['load_average_after'] = load_average()
            self.summary['window']['epoch_after'] = runner.epoch
            self.write()
        else:
            self.switch(LOADER_WAIT)

    def report_profile(self):
        n = self.count
        events = self.prof.key_averages()
        cpu = torch.autograd.DeviceType.CPU
        host = [e for e in events if e.device_type == cpu]
        # kernels' time as the profiler's table sums it (attributed to the
        # host ops that launched them; kernel rows would count it twice)
        self.summary.update(
            kernel_ms=sum(e.self_device_time_total for e in host) / n / 1e3,
            aten_ops=sum(e.count for e in host
                         if e.key.startswith('aten::')) / n,
            launches=sum(e.count for e in events if e.key in (
                'cudaLaunchKernel', 'cuLaunchKernel', 'cuLaunchKernelEx',
                'cudaLaunchKernelExC', 'cudaMemsetAsync', 'cudaMemcpyAsync'))
            / n,
            host_reads=sum(e.count for e in events
                           if e.key == 'aten::_local_scalar_dense') / n,
            syncs=sum(e.count for e in events if e.key in (
                'cudaStreamSynchronize', 'cudaDeviceSynchronize',
                'cudaEventSynchronize')) / n)
        ranges = {e.key[len(RANGE_PREFIX):]: e for e in host
                  if e.key.startswith(RANGE_PREFIX)}
        self.summary['ranges_ms'] = {
            name: ranges[name].cpu_time_total / n / 1e3 if name in ranges
            else 0.0 for name in self.summary['ranges_order']
        }
        self.summary['range_counts'] = {
            name: e.count for name, e in ranges.items()}
        ops = sorted((e for e in host if e.key.startswith('aten::')),
                     key=lambda e: e.self_cpu_time_total, reverse=True)
        self.summary['top_aten_ops'] = [
            dict(name=e.key, per_iter=e.count / n,
                 self_host_ms=e.self_cpu_time_total / n / 1e3,
                 host_ms=e.cpu_time_total / n / 1e3)
            for e in ops[:self.rows]
        ]
        table = events.table(sort_by='self_cpu_time_total',
                             row_limit=self.rows, max_name_column_width=60)
        with open(self.path('_ops.txt'), 'w') as f:
            f.write(table)

    def report_cprofile(self):
        n = self.count
        stats = pstats.Stats(self.cprof)
        rows = []
        for (file, line, func), (_, calls, own, cum, _) in \
                stats.stats.items():
            where = '/'.join(file.split(os.sep)[-2:])
            rows.append(dict(function=f'{where}:{line}({func})',
                             calls=calls / n, own_ms=own / n * 1e3,
                             cumulative_ms=cum / n * 1e3))
        rows.sort(key=lambda r: r['cumulative_ms'], reverse=True)
        self.summary['cprofile_top'] = rows[:self.rows * 2]
        self.summary['cprofile_top_own'] = sorted(
            rows, key=lambda r: r['own_ms'], reverse=True)[:self.rows]
        stream = io.StringIO()
        stats.stream = stream
        stats.sort_stats('cumulative').print_stats(self.rows * 2)
        with open(self.path('_python.txt'), 'w') as f:
            f.write(stream.getvalue())

    def path(self, suffix):
        os.makedirs(self.out_dir, exist_ok=True)
        return osp.join(self.out_dir, self.label + suffix)

    def write(self):
        text = profile_table(self.summary)
        with open(self.path('.json'), 'w') as f:
            json.dump(self.summary, f, indent=1)
        with open(self.path('.txt'), 'w') as f:
            f.write(text + '\n')
        print(text, flush=True)


def read_profile(out_dir, label):
    """A ProfileHook's summary, or None if the run did not write one."""
    path = osp.join(out_dir, f'{label}.json')
    if not osp.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


# --- the host: threads, cores, load ----------------------------------------
def _children():
    """The pids of this process's child processes (Linux; else none)."""
    pids = []
    for task in glob.glob(f'/proc/{os.getpid()}/task/*/children'):
        try:
            with open(task) as f:
                pids += [int(p) for p in f.read().split()]
        except OSError:
            pass
    return sorted(set(pids))


def _stat(path):
    """(name, CPU seconds) from a /proc .../stat file, or None."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return None
    name = text[text.index('(') + 1:text.rindex(')')]
    fields = text[text.rindex(')') + 2:].split()
    tick = os.sysconf('SC_CLK_TCK')
    return name, (int(fields[11]) + int(fields[12])) / tick


def _threads(pid):
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith('Threads:'):
                    return int(line.split()[1])
    except OSError:
        return None


def _affinity(pid=0):
    try:
        return len(os.sched_getaffinity(pid))
    except (AttributeError, OSError):
        return None


def process_facts(runner):
    """Threads and processes of this training process: the known suspects
    for a slower step (the main process's threads against the loader
    workers', the start method, the host's load)."""
    try:
        import cv2
        cv2_threads = cv2.getNumThreads()
    except ImportError:
        cv2_threads = None
    loader = runner.train_loop.dataloader
    context = loader.multiprocessing_context
    children = _children()
    return dict(
        process=osp.basename(sys.argv[0]), pid=os.getpid(),
        torch=torch.__version__,
        device=(torch.cuda.get_device_name()
                if torch.cuda.is_available() else 'CPU'),
        torch_threads=torch.get_num_threads(),
        torch_interop_threads=torch.get_num_interop_threads(),
        cpu_count=os.cpu_count(), affinity_cpus=_affinity(),
        OMP_NUM_THREADS=os.environ.get('OMP_NUM_THREADS'),
        MKL_NUM_THREADS=os.environ.get('MKL_NUM_THREADS'),
        cv2_threads=cv2_threads,
        cudnn_benchmark=torch.backends.cudnn.benchmark,
        workers=loader.num_workers,
        persistent_workers=loader.persistent_workers,
        pin_memory=loader.pin_memory,
        prefetch_factor=loader.prefetch_factor,
        mp_start_method=torch.multiprocessing.get_start_method(
            allow_none=True),
        loader_start_method=(context.get_start_method()
                             if context is not None else None),
        main_process_threads=_threads(os.getpid()),
        child_processes=len(children),
        child_threads=[_threads(pid) for pid in children],
        child_affinity_cpus=sorted({_affinity(pid) for pid in children} -
                                   {None}),
        load_average_before=load_average())


def load_average():
    return [round(v, 2) for v in os.getloadavg()]


def cpu_sample():
    """Wall clock, the host's busy and total CPU time (/proc/stat), this
    process's CPU time by thread name and its children's."""
    sample = dict(wall=time.perf_counter(), host=None, threads={},
                  children={})
    try:
        with open('/proc/stat') as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
        tick = os.sysconf('SC_CLK_TCK')
        idle = fields[3] + fields[4]  # idle, iowait
        sample['host'] = ((sum(fields) - idle) / tick, sum(fields) / tick)
    except (OSError, ValueError, IndexError):
        pass
    pid = os.getpid()
    for task in glob.glob(f'/proc/{pid}/task/*/stat'):
        stat = _stat(task)
        if stat:
            tid = task.split('/')[-2]
            # the main thread apart from the other Python threads (the
            # loader's pin-memory thread), which share its name
            if tid == str(pid):
                sample['name'] = stat[0]
                stat = ('main thread', stat[1])
            sample['threads'][tid] = stat
    for pid in _children():
        stat = _stat(f'/proc/{pid}/stat')
        if stat:
            sample['children'][pid] = stat[1]
    return sample


def cpu_usage(a, b, iters):
    """Cores kept busy between two samples: the whole host, this process
    (and its threads by name), its child processes; and ms/iteration."""
    wall = b['wall'] - a['wall']
    out = dict(wall_ms=wall / iters * 1e3)
    if a['host'] and b['host']:
        out['host_busy_cores'] = (b['host'][0] - a['host'][0]) / wall
        out['host_cores'] = (b['host'][1] - a['host'][1]) / wall
    by_name, count = {}, {}
    main = b.get('name')
    for tid, (name, seconds) in b['threads'].items():
        if tid in a['threads']:
            if name == main:  # threads that kept the process's name
                name = f'other threads named {name}'
            by_name[name] = by_name.get(name, 0.0) + seconds - a['threads'][
                tid][1]
            count[name] = count.get(name, 0) + 1
    out['main_process_cores'] = sum(by_name.values()) / wall
    out['main_process_cpu_ms'] = sum(by_name.values()) / iters * 1e3
    out['threads_cores'] = {
        name: seconds / wall for name, seconds in sorted(
            by_name.items(), key=lambda kv: -kv[1]) if seconds > 0
    }
    out['threads_count'] = count
    both = [pid for pid in b['children'] if pid in a['children']]
    out['children_cores'] = sum(b['children'][p] - a['children'][p]
                                for p in both) / wall
    return out


def profile_table(s):
    """The text table of a ProfileHook summary."""
    facts, cpu = s.get('facts', {}), s.get('cpu', {})
    n = s['window']['count']
    lines = [
        f'[profile {s["label"]}] iterations {s["window"]["first_iter"]}-'
        f'{s["window"]["last_iter"]} ({n} unprofiled, {n} torch.profiler, '
        f'{n} cProfile), process {facts.get("process")}',
        f'  wall, unprofiled (synchronised): {s.get("wall_ms", 0):.1f} ms/iter'
        f'; under torch.profiler: {s.get("profiled_wall_ms", 0):.1f} ms/iter',
        f'  kernels {s.get("kernel_ms", 0):.1f} ms/iter, '
        f'{s.get("aten_ops", 0):.0f} ATen ops/iter, '
        f'{s.get("launches", 0):.0f} kernel launches and copies/iter, '
        f'{s.get("host_reads", 0):.0f} host reads of tensor values/iter '
        f'(CPU tensors too), {s.get("syncs", 0):.1f} explicit '
        'synchronisations/iter',
        '  host time per iteration by range (under torch.profiler):'
    ]
    ranges = s.get('ranges_ms', {})
    for name, ms in ranges.items():
        lines.append(f'    {name:<60} {ms:8.2f} ms')
    lines.append(f'    {"sum of the ranges":<60} '
                 f'{sum(ranges.values()):8.2f} ms')
    lines.append('  CPU, unprofiled iterations: ' + ', '.join(
        f'{k} {v:.2f}' for k, v in cpu.items() if not isinstance(v, dict)))
    counts = cpu.get('threads_count', {})
    lines.append('  threads of this process (how many), cores busy: ' +
                 ', '.join(f'{k} ({counts.get(k)}) {v:.2f}' for k, v in list(
                     cpu.get('threads_cores', {}).items())[:8]))
    lines.append('  facts: ' + ', '.join(f'{k}={v}' for k, v in facts.items()
                                         if k not in ('pid', )))
    lines.append(f'  load average after: {s.get("load_average_after")}')
    lines.append('  top ATen ops by host time (self ms/iter, calls/iter): ' +
                 ', '.join(f'{o["name"]} {o["self_host_ms"]:.2f} '
                           f'({o["per_iter"]:.0f})'
                           for o in s.get('top_aten_ops', [])[:10]))
    lines.append('  host waits for the GPU by call site (sync debug mode, '
                 'cProfile iterations; per iteration): ' + (', '.join(
                     f'{site} {c:.1f}'
                     for site, c in s.get('sync_sites', {}).items())
                     or 'none'))
    lines.append('  top Python functions by cumulative time (cProfile, ms/'
                 'iter):')
    for row in s.get('cprofile_top', [])[:15]:
        lines.append(f'    {row["function"][-70:]:<70} '
                     f'{row["cumulative_ms"]:8.2f} ({row["calls"]:.0f} calls)')
    return '\n'.join(lines)


def run_profile(name, config, options, args, ann_files, work_root, iters):
    """The end-to-end run's config, profiled, in this process (Runner.
    from_cfg and train, as tools/train.py does without its checks)."""
    cfg, work_dir, _ = e2e_config(name, config, options, args, ann_files,
                                  work_root, iters, 'profile')
    # cuDNN's autotuning as in tools/train.py: the config's (main() turns it
    # on for the bare step; the Runner only ever turns it on)
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = bool(
        cfg.get('env_cfg', {}).get('cudnn_benchmark', False))
    start = time.perf_counter()
    try:
        runner = Runner.from_cfg(cfg)
        runner.train()
        del runner
    finally:
        torch.backends.cudnn.benchmark = benchmark
    summary = dict(seconds=time.perf_counter() - start)
    summary['profile'] = read_profile(args.out_dir or work_dir,
                                      f'{name}_profile')
    summary.update(read_times(work_dir, cfg, args, summary['profile']))
    return summary


def compare_profiles(row):
    """Side by side: tools/train.py's unprofiled run, its profiled run and
    the in-process Runner's, per iteration."""
    runs = [(part, row[part]) for part in ('e2e-profile', 'profile')
            if row.get(part, {}).get('profile')]
    if not runs:
        return
    heads = ['tools/train.py (e2e)'] + [
        {'e2e-profile': 'tools/train.py (e2e-profile)',
         'profile': 'in-process Runner (profile)'}[p] for p, _ in runs]
    print(f'\n[{row["name"]}] per iteration, side by side (ms unless said)')
    print('| | ' + ' | '.join(heads) + ' |' +
          (' e2e-profile - profile |' if len(runs) == 2 else ''))
    print('|' + '---|' * (len(heads) + 1 + (len(runs) == 2)))

    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def line(label, values, spec='.1f'):
        diff = ''
        if len(runs) == 2:
            a, b = values[1], values[2]
            diff = (' ' + fmt(a - b, '+' + spec) + ' |'
                    if number(a) and number(b) else ' - |')
        print(f'| {label} | ' + ' | '.join(
            ('-' if v is None else str(v)) if not number(v) else
            str(v) if isinstance(v, int) else fmt(v, spec)
            for v in values) + ' |' + diff, flush=True)

    iter_ms = [row.get('iter_s')] + [r.get('iter_s') for _, r in runs]
    line('wall, unprofiled iterations of the run (timestamps, steady)',
         [v * 1e3 if v else None for v in iter_ms])
    profiles = [r['profile'] for _, r in runs]
    for key, label in (('wall_ms', 'wall, unprofiled window (synchronised)'),
                       ('profiled_wall_ms', 'wall under torch.profiler'),
                       ('kernel_ms', 'GPU kernel time'),
                       ('aten_ops', 'ATen ops'),
                       ('launches', 'kernel launches and copies'),
                       ('host_reads', 'host reads of tensor values')):
        line(label, [None] + [p.get(key) for p in profiles])
    names = []
    for p in profiles:
        names += [k for k in p.get('ranges_ms', {}) if k not in names]
    for name in names:
        line(name, [None] + [p.get('ranges_ms', {}).get(name)
                             for p in profiles], '.2f')
    for key in ('main_process_cores', 'main_process_cpu_ms',
                'children_cores', 'host_busy_cores'):
        line(f'CPU: {key}', [None] + [p.get('cpu', {}).get(key)
                                      for p in profiles], '.2f')
    keys = []
    for p in profiles:
        keys += [k for k in p.get('facts', {}) if k not in keys]
    for key in keys:
        if key in ('pid', 'torch', 'device'):
            continue
        line(key, [None] + [p.get('facts', {}).get(key) for p in profiles])
    line('load average after', [None] + [
        p.get('load_average_after') for p in profiles])


# --- main -------------------------------------------------------------------
QUICK = dict(parts=['bare', 'e2e', 'e2e-profile', 'profile'], iters=200,
             e2e_timeout=200)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('--peer', help='a second config measured alike '
                        '(e.g. mmpretrain::swin_transformer/'
                        'swin-tiny_16xb64_in1k.py)')
    parser.add_argument(
        '--variant', nargs='+', action='append', default=[],
        metavar=('NAME', 'KEY=VALUE'),
        help='another end-to-end run of the config with these settings')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='settings for every run of the config')
    parser.add_argument('--data', default='/tmp/train_speed_data')
    parser.add_argument('--images', type=int, default=2000,
                        help='distinct training JPEGs generated')
    parser.add_argument('--val-images', type=int, default=1000)
    parser.add_argument('--repeats', type=int, default=12,
                        help='times each image is listed per epoch')
    parser.add_argument('--long-side', type=int, nargs=2, default=[400, 500])
    parser.add_argument('--workers', type=int, default=8,
                        help='data-loader workers (train and val)')
    parser.add_argument('--batch', type=int,
                        help='batch size (default: the configs\')')
    parser.add_argument(
        '--amp', choices=['bfloat16', 'float16', 'none'],
        default='bfloat16' if torch.cuda.is_available() else 'none')
    parser.add_argument(
        '--bf16-loss-scale', choices=['none', 'dynamic'], default='none',
        help='bf16 AMP without (default) or with a dynamic GradScaler')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--iters', type=int,
                        help='end-to-end training iterations (about; '
                        'default 400, --quick 200)')
    parser.add_argument('--variant-iters', type=int,
                        help='the same for the --variant runs (default: '
                        '--iters)')
    parser.add_argument(
        '--warmup-iters', type=int, default=40,
        help='iterations left out at the start; the profiles start after '
        'them')
    parser.add_argument(
        '--restart-iters', type=int, default=15,
        help='iterations left out at the start of each later epoch')
    parser.add_argument(
        '--val-skip', type=int,
        help='validation batches left out at the start (default: workers '
        '+ 1, the batches the workers make together at their start)')
    parser.add_argument('--bare-iters', type=int, default=30)
    parser.add_argument('--bare-warmup', type=int, default=5)
    parser.add_argument('--loader-batches', type=int, default=60)
    parser.add_argument('--transform-images', type=int, default=200)
    parser.add_argument('--augment-iters', type=int, default=20,
                        help='calls timed by --parts gpu-augment')
    parser.add_argument(
        '--parts', nargs='+',
        choices=['bare', 'step', 'loader', 'transforms', 'gpu-augment',
                 'e2e', 'e2e-profile', 'profile'],
        help='what to measure (default: bare step loader e2e; --quick: '
        'bare e2e e2e-profile profile)')
    parser.add_argument(
        '--profile', action='store_true',
        help='the same as --parts profile: the end-to-end run profiled in '
        'this process')
    parser.add_argument(
        '--quick', action='store_true',
        help='one GPU call of about 5 minutes: --parts bare e2e e2e-profile '
        'profile --iters 200 --e2e-timeout 200 (options given win)')
    parser.add_argument('--profile-iters', type=int, default=5,
                        help='iterations in each profile window')
    parser.add_argument('--e2e-timeout', type=float,
                        help='seconds after which a tools/train.py run is '
                        'stopped (what it wrote is kept)')
    parser.add_argument(
        '--exit-wait', type=float, default=30,
        help='seconds a tools/train.py run may take to exit after its run '
        'ended (after_run wrote its times) before it is stopped (reported)')
    parser.add_argument(
        '--gpus', type=int,
        help='the end-to-end runs on this many GPUs, as tools/dist_train.sh '
        'runs them (torch.distributed.run, --launcher pytorch; 1: one GPU '
        'under DDP); their images/s count every GPU\'s, and e2e / bare is '
        'against this many bare steps')
    parser.add_argument('--rows', type=int, default=30)
    parser.add_argument('--work-dir', default='/tmp/train_speed_work')
    parser.add_argument(
        '--out-dir', help='where the figures (train_speed.json, saved after '
        'each part), profiles and tools/train.py logs are written')
    args = parser.parse_args(argv)
    if args.gpus is not None and args.gpus < 1:
        parser.error(f'--gpus must be at least 1, got {args.gpus}')
    if (args.gpus or 1) > 1 and args.parts and 'e2e-profile' in args.parts:
        parser.error('--parts e2e-profile profiles one process: not with '
                     f'--gpus {args.gpus}')
    defaults = dict(parts=['bare', 'step', 'loader', 'e2e'], iters=400,
                    e2e_timeout=None)
    if args.quick:
        defaults.update(QUICK)
    if args.profile:
        defaults['parts'] = ['profile']
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def fmt(value, spec='.0f', suffix=''):
    return '-' if value is None else format(value, spec) + suffix


def main(argv=None):
    args = parse_args(argv)
    torch.backends.cudnn.benchmark = True
    ann_files = prepare_data(args)
    gpu = (torch.cuda.get_device_name()
           if torch.cuda.is_available() else 'CPU')
    print(f'[data] mean training JPEG {mean_file_size(args.data):.0f} KiB; '
          f'{os.cpu_count()} CPUs, {args.workers} workers, {gpu}, '
          f'torch {torch.__version__}, AMP {args.amp}, parts '
          f'{" ".join(args.parts)}'
          + (f'; tools/train.py on {args.gpus} GPUs (DDP)' if args.gpus
             else ''), flush=True)
    runs = [('main', args.config, args.cfg_options)]
    for name, *options in args.variant:
        opts = dict(args.cfg_options or {})
        for option in options:
            key, value = option.split('=', 1)
            opts[key] = DictAction._parse_iterable(value)
        runs.append((name, args.config, opts))
    if args.peer:
        runs.append(('peer', args.peer, None))
    rows = []

    def save():  # after each part, so that a run cut short keeps its figures
        if args.out_dir:
            os.makedirs(args.out_dir, exist_ok=True)
            with open(osp.join(args.out_dir, 'train_speed.json'), 'w') as f:
                json.dump(rows, f, indent=1)

    for name, config, options in runs:
        cfg = load_config(config, args, options, ann_files)
        row = dict(name=name, config=config, batch=cfg.train_dataloader.
                   batch_size)
        rows.append(row)
        is_variant = name not in ('main', 'peer')
        iters = args.iters if not is_variant else (args.variant_iters
                                                    or args.iters)
        if 'bare' in args.parts and not is_variant:
            row.update(measure_bare(cfg, args))
            step_ms = row['batch'] / row['bare_train'] * 1e3
            if 'bare_train_eager' in row:
                print(f'[{name}] bare, eager: {row["bare_train_eager"]:.0f} '
                      'img/s training step; below, the backbone through '
                      'CUDA graphs, as the config trains', flush=True)
            print(f'[{name}] bare: {row["bare_train"]:.0f} img/s training '
                  f'step, {row["bare_infer"]:.0f} img/s inference '
                  f'({row["val_precision"]}); the step {step_ms:.1f} ms',
                  flush=True)
            save()
        if 'step' in args.parts:
            row.update(measure_train_step(cfg, args))
            print(f'[{name}] train_step: {row["train_step"]:.0f} img/s',
                  flush=True)
            save()
        if 'transforms' in args.parts and not is_variant:
            costs = time_transforms(cfg, args)
            row['transforms_ms'] = costs
            total = sum(ms for _, ms in costs)
            print(f'[{name}] transforms, ms per image on one core: ' +
                  ', '.join(f'{t} {ms:.2f}' for t, ms in costs) +
                  f'; total {total:.2f} ms = {1e3 / total:.0f} img/s per '
                  'core', flush=True)
            save()
        if 'gpu-augment' in args.parts and not is_variant:
            try:
                row.update(time_gpu_augment(cfg, args))
            except ValueError as e:  # a peer without the GPU augmentation
                print(f'[{name}] gpu-augment: not measured ({e})', flush=True)
            else:
                for part, label in (
                        ('resize', "the crops' resize"),
                        ('augment', 'GPU augmentation'),
                        ('grouped', 'GPU augmentation, grouped ops '
                         '(graph_augment=False)')):
                    if f'{part}_host_ms' in row:
                        print(f'[{name}] {label} of a batch of '
                              f'{row["augment_batch"]}: '
                              f'{row[f"{part}_host_ms"]:.2f} ms host, '
                              f'{fmt(row[f"{part}_gpu_ms"], ".2f")} ms '
                              f'device, {fmt(row[f"{part}_syncs"])} host '
                              'syncs', flush=True)
                save()
        if 'loader' in args.parts and not is_variant:
            row['loader'] = measure_loader(cfg, args)
            row['val_loader'] = measure_loader(cfg, args, 'val')
            print(f'[{name}] loader alone, sustained: {row["loader"]:.0f} '
                  f'img/s train, {row["val_loader"]:.0f} img/s val',
                  flush=True)
            save()
        if 'e2e' in args.parts:
            result = run_e2e(name, config, options, args, ann_files,
                             args.work_dir, iters)
            row.update(result)
            print(f'[{name}] tools/train.py: {fmt(row.get("e2e_steady"))} '
                  f'img/s steady ({fmt(row.get("iter_s"), ".4f")} s/iter, '
                  f'data wait {fmt(row.get("data_wait_s"), ".4f")} s), '
                  f'{fmt(row.get("e2e_all"))} img/s with epoch restarts; '
                  f'validation {fmt(row.get("val"))} img/s (full batches; '
                  f'{fmt(row.get("val_all"))} with the last one; data wait '
                  f'{fmt(row.get("val_wait_s"), ".4f")} s/batch, by quarter '
                  f'{[round(q, 4) for q in row.get("val_quarters_s", [])]}; '
                  f'exit {fmt(row.get("exit_s"), ".0f", " s")} after the '
                  'run) '
                  f'({row.get("iters", "-")} iterations, '
                  f'{row["seconds"]:.0f} s with start-up; slowest iteration '
                  f'{fmt(row.get("slowest_iter_s"), ".3f", " s")}; '
                  f'{row.get("gc_full", "-")} full garbage collections in '
                  f'training, {fmt(row.get("gc_full_s"), ".3f", " s")})',
                  flush=True)
            save()
        for part in ('e2e-profile', 'profile'):
            if part not in args.parts:
                continue
            if part == 'e2e-profile':
                result = run_e2e(name, config, options, args, ann_files,
                                 args.work_dir, iters, profile=part)
            else:
                result = run_profile(name, config, options, args, ann_files,
                                     args.work_dir, iters)
            row[part] = result
            save()
            profile = result.get('profile')
            if profile and part == 'e2e-profile':  # its print went to its log
                print(profile_table(profile), flush=True)
            where = ('tools/train.py' if part == 'e2e-profile' else
                     'in-process Runner')
            print(f'[{name}] {part}: {where}, unprofiled iterations of the '
                  f'same run: {fmt(result.get("iter_s"), ".4f")} s/iter '
                  f'steady ({result.get("steady_iters", 0)} iterations, '
                  f'data wait {fmt(result.get("data_wait_s"), ".4f")} s); '
                  'synchronised window '
                  f'{fmt((profile or {}).get("wall_ms"), ".1f")} ms/iter; '
                  f'{result["seconds"]:.0f} s with start-up', flush=True)
        compare_profiles(row)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # variants are read against the main config's bare figures
    bare = {r['name']: r for r in rows if 'bare_train' in r}
    print('| run | batch | bare step img/s | train_step img/s | loader img/s '
          '| e2e steady img/s | e2e / bare | e2e with restarts | data wait '
          's/iter | val img/s | bare infer img/s | val / bare |')
    print('|' + '---|' * 12)
    for r in rows:
        reference = bare.get('peer' if r['name'] == 'peer' else 'main', {})
        b, i = reference.get('bare_train'), reference.get('bare_infer')
        e2e, val = r.get('e2e_steady'), r.get('val')
        ratio = e2e / (b * (args.gpus or 1)) if e2e and b else None
        print(f'| {r["name"]} | {r["batch"]} | {fmt(b)} | '
              f'{fmt(r.get("train_step"))} | {fmt(r.get("loader"))} | '
              f'{fmt(e2e)} | {fmt(ratio, ".2f", "x")} | '
              f'{fmt(r.get("e2e_all"))} | '
              f'{fmt(r.get("data_wait_s"), ".4f")} | {fmt(val)} | {fmt(i)} | '
              f'{fmt(val / i if val and i else None, ".2f", "x")} |',
              flush=True)


if __name__ == '__main__':
    main()

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Training speed through mmengine's Runner against the bare network, in one
call, on generated ImageNet-format JPEGs of ImageNet's size.

    python tools/analysis_tools/train_speed.py \\
        configs/smlpnet/smlpnet-t_8xb128_in1k.py --workers 12 --iters 300 \\
        --peer mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py
    python tools/analysis_tools/train_speed.py CONFIG --variant upstream \\
        optim_wrapper.constructor=DefaultOptimWrapperConstructor
    python tools/analysis_tools/train_speed.py CONFIG --profile

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
  ones the workers had prefetched (``workers x prefetch_factor``).
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

``--profile`` instead builds the Runner in this process and profiles
Runner iterations of the config: wall time per iteration, the GPU's kernel
time, ATen ops, kernel launches and host reads of device values per
iteration, the host time of the loader wait / train_step / hooks, and the
Python functions taking the main thread's time (cProfile).
"""
import argparse
import copy
import cProfile
import importlib
import io
import json
import os
import os.path as osp
import pstats
import subprocess
import sys
import time

import mmsmlp  # noqa: F401,I001  isort:skip
import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper
from mmengine.registry import HOOKS, MODELS, init_default_scope
from mmengine.runner import Runner

from mmsmlp.datasets import make_imagenet

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TIMES_FILE = 'train_speed_times.json'


@HOOKS.register_module()
class IterTimestampHook(Hook):
    """Records ``time.perf_counter()`` before and after every training
    iteration and after every validation iteration (no device
    synchronisation), and writes them to ``<work_dir>/train_speed_times.json``
    at the end of the run. Used by this tool's end-to-end runs."""
    priority = 'LOWEST'

    def __init__(self):
        self.train, self.val = [], []
        self._before = None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self._before = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.train.append(
            (runner.epoch, batch_idx, self._before, time.perf_counter()))

    def before_val_epoch(self, runner):
        self.val.append(('start', time.perf_counter()))

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None):
        self.val.append((batch_idx, time.perf_counter()))

    def after_run(self, runner):
        with open(osp.join(runner.work_dir, TIMES_FILE), 'w') as f:
            json.dump(dict(train=self.train, val=self.val), f)


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
    if options:
        cfg.merge_from_dict(options)
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
            # of the config or --cfg-options wins
            cfg.optim_wrapper.setdefault('loss_scale', dict(enabled=False))
    cfg.setdefault('default_scope', 'mmpretrain')
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
    return dict(bare_train=batch / train_s, bare_infer=val_batch / infer_s,
                val_precision='fp16' if val_fp16 else 'fp32')


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
        images += len(next(batches)['inputs'])
    rate = images / (time.perf_counter() - start)
    del batches, loader  # ends the workers
    return rate


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
    totals = [0.0] * len(transforms)
    n = args.transform_images
    for i in range(n):
        results = dataset.get_data_info(i % len(dataset))
        for k, t in enumerate(transforms):
            start = time.perf_counter()
            results = t(results)
            totals[k] += time.perf_counter() - start
    torch.set_num_threads(threads)
    return [(type(t).__name__, s / n * 1e3) for t, s in zip(transforms,
                                                             totals)]


# --- end to end -------------------------------------------------------------
def run_e2e(name, config, options, args, ann_files, work_root, iters):
    """tools/train.py on a derived config; returns the timing summary."""
    cfg = load_config(config, args, options, ann_files)
    batch = cfg.train_dataloader.batch_size
    with open(cfg.train_dataloader.dataset.ann_file) as f:
        train_images = sum(1 for _ in f)
    iters_per_epoch = train_images // batch  # drop_last or not: about
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
    cfg.default_hooks.logger.interval = 50
    cfg.default_hooks.checkpoint = dict(
        type='SafeCheckpointHook', interval=epochs)
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + [
        dict(type='IterTimestampHook')
    ]
    imports = list(cfg.get('custom_imports', {}).get('imports', []))
    cfg.custom_imports = dict(
        imports=imports + ['train_speed'], allow_failed_imports=False)
    work_dir = osp.join(work_root, name)
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, 'config.py')
    cfg.dump(path)
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [osp.join(ROOT, 'tools', 'analysis_tools'), ROOT] +
        [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'train.py'), path,
         '--work-dir', work_dir],
        env=env, capture_output=True, text=True)
    if result.returncode:
        print(result.stdout[-3000:], result.stderr[-5000:])
        raise RuntimeError(f'tools/train.py failed for {name}')
    with open(osp.join(work_dir, TIMES_FILE)) as f:
        times = json.load(f)
    summary = summarize(times, batch, cfg.val_dataloader.batch_size, args)
    summary.update(
        epochs=epochs, iters=len(times['train']),
        seconds=time.perf_counter() - start)
    return summary


def summarize(times, batch, val_batch, args):
    train = times['train']
    steady, every, waits = [], [], []
    first_epoch = train[0][0] if train else 0
    for i in range(1, len(train)):
        epoch, inner, before, after = train[i]
        cycle = after - train[i - 1][3]
        if i < args.warmup_iters:
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
    val = [t for t in times['val'] if t[0] != 'start']
    skip = args.val_skip if args.val_skip is not None else args.workers + 1
    if len(val) > skip + 1:
        span = val[-1][1] - val[skip][1]
        out['val'] = val_batch * (len(val) - 1 - skip) / span
    return out


# --- profile ----------------------------------------------------------------
class _Range:

    def __init__(self):
        self.current = None

    def switch(self, name):
        if self.current is not None:
            self.current.__exit__(None, None, None)
        self.current = None
        if name:
            self.current = torch.profiler.record_function(name)
            self.current.__enter__()


class _HooksMark(Hook):
    """Opens the profile's range of the after-iteration hooks: it runs
    first of them."""
    priority = 'HIGHEST'

    def __init__(self, profile_hook):
        self.profile_hook = profile_hook

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.profile_hook.mark_hooks()


class ProfileHook(Hook):
    """Profiles iterations ``[start, start + count)`` of the training loop:
    torch.profiler (host ops, kernels, ranges) then cProfile over as many."""

    def __init__(self, start, count, rows, out):
        self.start, self.count, self.rows, self.out = start, count, rows, out
        self.range = _Range()
        self.prof = self.cprof = None
        self.marks = {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self.prof is not None:
            self.range.switch('runner: train_step')

    def mark_hooks(self):
        """Called first after each iteration (see _HooksMark)."""
        if self.prof is not None:
            self.range.switch('runner: after_train_iter hooks')

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        i = runner.iter + 1  # iterations done
        if i == self.start:
            sync()
            self.marks['wall0'] = time.perf_counter()
        if i == self.start + self.count:
            sync()
            self.marks['wall'] = (time.perf_counter() -
                                  self.marks['wall0']) / self.count
            activities = [torch.profiler.ProfilerActivity.CPU]
            if torch.cuda.is_available():
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.prof = torch.profiler.profile(activities=activities)
            self.prof.__enter__()
            self.range.switch('runner: loader wait')
        elif i == self.start + 2 * self.count:
            self.range.switch(None)
            sync()
            self.prof.__exit__(None, None, None)
            self.report_profile()
            self.prof = None
            self.cprof = cProfile.Profile()
            self.cprof.enable()
        elif i == self.start + 3 * self.count:
            self.cprof.disable()
            self.report_cprofile()
            runner.train_loop.stop_training = True
            self.cprof = None
        elif self.prof is not None:
            self.range.switch('runner: loader wait')

    def report_profile(self):
        n = self.count
        events = self.prof.key_averages()
        cpu = torch.autograd.DeviceType.CPU
        # kernels' time as the profiler's table sums it (attributed to the
        # host ops that launched them; kernel rows would count it twice)
        kernels = sum(e.self_device_time_total for e in events
                      if e.device_type == cpu) / n / 1e3
        aten = sum(e.count for e in events
                   if e.device_type == cpu and e.key.startswith('aten::')) / n
        launches = sum(e.count for e in events if e.key in (
            'cudaLaunchKernel', 'cuLaunchKernel', 'cuLaunchKernelEx',
            'cudaLaunchKernelExC', 'cudaMemsetAsync', 'cudaMemcpyAsync')) / n
        reads = sum(e.count for e in events
                    if e.key == 'aten::_local_scalar_dense') / n
        syncs = sum(e.count for e in events if e.key in (
            'cudaStreamSynchronize', 'cudaDeviceSynchronize',
            'cudaEventSynchronize')) / n
        ranges = {e.key: e.cpu_time_total / n / 1e3 for e in events
                  if e.key.startswith('runner: ') and e.device_type == cpu}
        lines = [
            f'[profile] wall {self.marks["wall"] * 1e3:.1f} ms/iter '
            f'(unprofiled), kernels {kernels:.1f} ms/iter, '
            f'{aten:.0f} ATen ops/iter, {launches:.0f} kernel launches and '
            f'copies/iter, {reads:.0f} reads of tensor values by the host/'
            'iter (CPU tensors too), '
            f'{syncs:.1f} explicit synchronisations/iter',
            '[profile] host time per iteration (under the profiler, which '
            'slows the host): ' + ', '.join(
                f'{k[8:]} {v:.1f} ms' for k, v in sorted(ranges.items()))
        ]
        table = events.table(sort_by='self_cpu_time_total',
                             row_limit=self.rows, max_name_column_width=60)
        print('\n'.join(lines), flush=True)
        with open(self.out + '_ops.txt', 'w') as f:
            f.write('\n'.join(lines) + '\n' + table)
        print(table[:6000], flush=True)

    def report_cprofile(self):
        stream = io.StringIO()
        stats = pstats.Stats(self.cprof, stream=stream)
        stats.sort_stats('cumulative').print_stats(self.rows * 2)
        text = stream.getvalue()
        with open(self.out + '_python.txt', 'w') as f:
            f.write(text)
        print(f'[profile] Python functions, cumulative time over {self.count}'
              ' iterations (cProfile slows the host down):')
        print(text[:8000], flush=True)


def run_profile(args, ann_files, work_root):
    cfg = load_config(args.config, args, args.cfg_options, ann_files)
    start, count = args.warmup_iters, args.profile_iters
    cfg.train_cfg = dict(type='IterBasedTrainLoop',
                         max_iters=start + 3 * count + 2, val_interval=10**9)
    cfg.default_hooks.logger.interval = 10**6
    cfg.default_hooks.checkpoint = dict(type='SafeCheckpointHook',
                                        interval=10**9)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.work_dir = osp.join(work_root, 'profile')
    cfg.param_scheduler = [
        s for s in cfg.get('param_scheduler', []) or []
    ]
    for s in cfg.param_scheduler:  # epoch-based schedules in an iter loop
        s.pop('convert_to_iter_based', None)
        s.by_epoch = False
    runner = Runner.from_cfg(cfg)
    out = osp.join(args.out_dir or cfg.work_dir, 'profile')
    os.makedirs(osp.dirname(out), exist_ok=True)
    profile_hook = ProfileHook(start, count, args.rows, out)
    runner.register_hook(profile_hook, priority='LOWEST')
    runner.register_hook(_HooksMark(profile_hook), priority='HIGHEST')
    runner.train()


# --- main -------------------------------------------------------------------
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
    parser.add_argument('--iters', type=int, default=400,
                        help='end-to-end training iterations (about)')
    parser.add_argument('--variant-iters', type=int,
                        help='the same for the --variant runs (default: '
                        '--iters)')
    parser.add_argument('--warmup-iters', type=int, default=40)
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
    parser.add_argument(
        '--parts', nargs='+', default=['bare', 'step', 'loader', 'e2e'],
        choices=['bare', 'step', 'loader', 'transforms', 'e2e'])
    parser.add_argument('--profile', action='store_true',
                        help='profile Runner iterations of the config')
    parser.add_argument('--profile-iters', type=int, default=5)
    parser.add_argument('--rows', type=int, default=30)
    parser.add_argument('--work-dir', default='/tmp/train_speed_work')
    parser.add_argument('--out-dir', help='where --profile writes its tables')
    return parser.parse_args(argv)


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
          f'torch {torch.__version__}, AMP {args.amp}', flush=True)
    if args.profile:
        return run_profile(args, ann_files, args.work_dir)
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
        if 'bare' in args.parts and not is_variant:
            row.update(measure_bare(cfg, args))
            print(f'[{name}] bare: {row["bare_train"]:.0f} img/s training '
                  f'step, {row["bare_infer"]:.0f} img/s inference '
                  f'({row["val_precision"]})', flush=True)
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
        if 'loader' in args.parts and not is_variant:
            row['loader'] = measure_loader(cfg, args)
            row['val_loader'] = measure_loader(cfg, args, 'val')
            print(f'[{name}] loader alone, sustained: {row["loader"]:.0f} '
                  f'img/s train, {row["val_loader"]:.0f} img/s val',
                  flush=True)
            save()
        if 'e2e' in args.parts:
            iters = args.iters if not is_variant else (args.variant_iters
                                                        or args.iters)
            row.update(
                run_e2e(name, config, options, args, ann_files,
                        args.work_dir, iters))
            print(f'[{name}] tools/train.py: {fmt(row.get("e2e_steady"))} '
                  f'img/s steady ({fmt(row.get("iter_s"), ".4f")} s/iter, '
                  f'data wait {fmt(row.get("data_wait_s"), ".4f")} s), '
                  f'{fmt(row.get("e2e_all"))} img/s with epoch restarts; '
                  f'validation {fmt(row.get("val"))} img/s ({row["iters"]} '
                  f'iterations, {row["seconds"]:.0f} s with start-up)',
                  flush=True)
            save()
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
        ratio = e2e / b if e2e and b else None
        print(f'| {r["name"]} | {r["batch"]} | {fmt(b)} | '
              f'{fmt(r.get("train_step"))} | {fmt(r.get("loader"))} | '
              f'{fmt(e2e)} | {fmt(ratio, ".2f", "x")} | '
              f'{fmt(r.get("e2e_all"))} | '
              f'{fmt(r.get("data_wait_s"), ".4f")} | {fmt(val)} | {fmt(i)} | '
              f'{fmt(val / i if val and i else None, ".2f", "x")} |')


if __name__ == '__main__':
    main()

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Issue 21's training-path changes compute what mmengine's defaults
compute: merged optimizer parameter groups (same update, schedules, state
and resume) and the foreach EMA (same averages); and the speed tool runs."""
import copy
import functools
import json
import os.path as osp
import re

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config, ConfigDict
from mmengine.model import ExponentialMovingAverage
from mmengine.optim import build_optim_wrapper
from mmengine.optim.scheduler import CosineAnnealingLR, LinearLR

from mmsmlp.engine import ForeachEMA, GroupedOptimWrapperConstructor
from .conftest import REPO_ROOT, import_tool, run_tool

# mmpretrain's Swin/DeiT schedule (imagenet_bs1024_adamw_swin.py) with a
# custom key: no decay on norms, biases and 1-d parameters, a smaller
# learning rate for the head.
OPTIM = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05,
                   betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        norm_decay_mult=0.0, bias_decay_mult=0.0, flat_decay_mult=0.0,
        custom_keys={'head': dict(lr_mult=0.5)}))


@functools.lru_cache
def train_speed_tool():
    """The tool, imported once (it registers its hooks in mmengine's
    registry, which refuses a second registration)."""
    return import_tool('analysis_tools/train_speed.py')


class Net(nn.Module):

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.norm = nn.LayerNorm(8)
        self.scale = nn.Parameter(torch.ones(8))
        self.fc = nn.Linear(8, 8, bias=False)
        self.head = nn.Linear(8, 4)

    def forward(self, x):
        x = self.bn(self.conv(x)).mean((2, 3))
        return self.head(self.fc(self.norm(x)) * self.scale)


def build(model, constructor):
    # a ConfigDict, as the Runner passes a config file's
    cfg = ConfigDict(copy.deepcopy(OPTIM))
    cfg['constructor'] = constructor
    return build_optim_wrapper(model, cfg)


def options_per_param(optim_wrapper):
    """Each parameter's options (lr, weight decay, ...), by identity."""
    return {
        id(p): {k: v for k, v in group.items() if k != 'params'}
        for group in optim_wrapper.optimizer.param_groups
        for p in group['params']
    }


def train(model, optim_wrapper, schedulers, steps, seed=0):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(4, 3, 6, 6, generator=generator)
        loss = model(x).square().mean()
        optim_wrapper.update_params(loss)
        for scheduler in schedulers:
            scheduler.step()


def schedulers_of(optim_wrapper):
    return [
        LinearLR(optim_wrapper, start_factor=0.1, end=3),
        CosineAnnealingLR(optim_wrapper, T_max=10, begin=3, eta_min=1e-5)
    ]


def test_grouped_constructor_keeps_each_parameters_options():
    torch.manual_seed(0)
    model = Net()
    default = build(model, 'DefaultOptimWrapperConstructor')
    grouped = build(model, 'GroupedOptimWrapperConstructor')
    per_param = options_per_param(default)
    # one group per parameter tensor upstream; one per set of options here
    assert len(default.optimizer.param_groups) == len(per_param) == 10
    groups = grouped.optimizer.param_groups
    # decay, no decay, the head (custom keys override the other rules)
    assert len(groups) == 3
    assert options_per_param(grouped) == per_param
    # plain dicts: the ConfigDicts the registry makes cost AdamW host time
    # at each read (docs/benchmarks.md)
    assert {type(g) for g in groups} == {dict}
    assert {type(g) for g in default.optimizer.param_groups} != {dict}
    # parameters keep the default constructor's order inside each group
    order = [id(p) for p in model.parameters()]
    for group in groups:
        ids = [order.index(id(p)) for p in group['params']]
        assert ids == sorted(ids)


def test_grouped_constructor_same_training_schedules_and_resume():
    torch.manual_seed(0)
    model_a = Net()
    model_b = copy.deepcopy(model_a)
    default = build(model_a, 'DefaultOptimWrapperConstructor')
    grouped = build(model_b, 'GroupedOptimWrapperConstructor')
    sched_a, sched_b = schedulers_of(default), schedulers_of(grouped)
    train(model_a, default, sched_a, 5)
    train(model_b, grouped, sched_b, 5)
    for a, b in zip(model_a.parameters(), model_b.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    lrs_a, lrs_b = options_per_param(default), options_per_param(grouped)
    assert lrs_a.keys() == {id(p) for p in model_a.parameters()}
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert lrs_a[id(pa)]['lr'] == pytest.approx(lrs_b[id(pb)]['lr'])

    # Resume: the state loaded into a fresh grouped optimizer (and its
    # schedulers) trains on exactly as the unbroken run does.
    model_c = copy.deepcopy(model_b)
    resumed = build(model_c, 'GroupedOptimWrapperConstructor')
    sched_c = schedulers_of(resumed)  # the Runner's order: build, then load
    resumed.load_state_dict(copy.deepcopy(grouped.state_dict()))
    for s_c, s in zip(sched_c, sched_b):
        s_c.load_state_dict(s.state_dict())
    train(model_c, resumed, sched_c, 3, seed=1)
    train(model_b, grouped, sched_b, 3, seed=1)
    for c, b in zip(model_c.parameters(), model_b.parameters()):
        torch.testing.assert_close(c, b, rtol=0, atol=0)


def test_grouped_constructor_names_the_way_to_resume_upstream_state():
    default = build(Net(), 'DefaultOptimWrapperConstructor')
    grouped = build(Net(), 'GroupedOptimWrapperConstructor')
    with pytest.raises(ValueError, match='optim_wrapper.constructor='
                       'DefaultOptimWrapperConstructor'):
        grouped.load_state_dict(default.state_dict())


@pytest.mark.parametrize('update_buffers', [False, True])
@pytest.mark.parametrize('interval', [1, 2])
def test_foreach_ema_equals_mmengines(update_buffers, interval):
    torch.manual_seed(0)
    model = Net()
    ema = ExponentialMovingAverage(
        model, momentum=0.1, interval=interval, update_buffers=update_buffers)
    fast = ForeachEMA(
        model, momentum=0.1, interval=interval, update_buffers=update_buffers)
    for step in range(6):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()
        model(torch.randn(4, 3, 6, 6))  # moves the BatchNorm statistics
        ema.update_parameters(model)
        fast.update_parameters(model)
        if step == 3:  # a fresh ForeachEMA resumed from the state dict
            resumed = ForeachEMA(
                Net(), momentum=0.1, interval=interval,
                update_buffers=update_buffers)
            resumed.load_state_dict(fast.state_dict())
            fast = resumed
        state, fast_state = ema.state_dict(), fast.state_dict()
        assert state.keys() == fast_state.keys()
        for key in state:
            assert torch.equal(state[key], fast_state[key]), key


def test_configs_use_the_fast_paths():
    for name in ('smlpnet/smlpnet-t_8xb128_in1k.py',
                 'quickstart/smlpnet-mini_1xb32_synthetic-in1k-format.py'):
        cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', name))
        assert cfg.optim_wrapper.constructor == \
            'GroupedOptimWrapperConstructor'
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs/smlpnet/smlpnet-t_8xb128_in1k.py'))
    ema = [h for h in cfg.custom_hooks if h.type == 'RawAndEMAHook'][0]
    assert ema.ema_type == 'ForeachEMA'
    assert GroupedOptimWrapperConstructor  # importable from mmsmlp.engine
    # no host synchronisation per iteration (docs/benchmarks.md)
    assert [a.type for a in cfg.model.train_cfg.augments] == [
        'AsyncMixup', 'AsyncCutMix']
    assert cfg.default_hooks.runtime_info.type == 'DeferredRuntimeInfoHook'
    finite = [h for h in cfg.custom_hooks if h.type == 'FiniteLossHook']
    assert finite[0].check_interval == 50
    from mmpretrain.registry import MODELS
    preprocessor = MODELS.build(cfg.data_preprocessor)
    assert preprocessor._non_blocking is True


@pytest.mark.parametrize('key', ['pred_score', 'pred_label'])
@pytest.mark.parametrize('two_labels', [False, True])
def test_batched_accuracy_equals_mmpretrains(key, two_labels):
    """BatchedAccuracy (one host copy per batch, not waited for) stores the
    results mmpretrain's Accuracy stores (one copy per sample) and reports
    the same metrics, with top-k and thresholds; a sample holding two
    labels (which Accuracy's metrics refuse) is stored alike too."""
    from mmpretrain.evaluation.metrics import Accuracy
    from mmpretrain.structures import DataSample

    from mmsmlp.evaluation import BatchedAccuracy
    torch.manual_seed(0)
    options = dict(topk=(1, 5), thrs=(0.0, 0.1)) if key == 'pred_score' \
        else dict(topk=1)
    upstream, batched = Accuracy(**options), BatchedAccuracy(**options)
    unflushed = BatchedAccuracy(**options)
    for batch in range(3):
        scores = torch.randn(6, 10).softmax(1)
        samples = []
        for i, score in enumerate(scores):
            sample = DataSample()
            if key == 'pred_score':
                sample.set_pred_score(score)
            else:
                sample.set_pred_label(score.argmax(0, keepdim=True))
            # one sample of the last batch with two labels
            labels = [3, 7] if two_labels and (batch, i) == (2, 5) \
                else [i % 10]
            samples.append(sample.set_gt_label(labels).to_dict())
        upstream.process(None, samples)
        batched.process(None, samples)
        unflushed.process(None, samples)
    # the last batch's results are stored when read, or at evaluate
    assert len(batched._results) == 12
    assert len(batched.results) == len(upstream.results) == 18
    for ours, theirs in zip(batched.results, upstream.results):
        assert ours.keys() == theirs.keys()
        for name in theirs:
            assert ours[name].dtype == theirs[name].dtype
            assert torch.equal(ours[name], theirs[name]), name
    if not two_labels:
        metrics = upstream.evaluate(18)
        assert batched.evaluate(18) == metrics
        assert unflushed.evaluate(18) == metrics  # evaluate stores the last
        # wrappers that read `results` before evaluating see every batch
        from mmpretrain.evaluation.metrics import MultiTasksMetric
        tasks = MultiTasksMetric(task_metrics={'task0': [
            dict(type='BatchedAccuracy', **options)]})
        tasks.process(None, [dict(task0=dict(s, eval_mask=True))
                             for s in samples])
        one_batch = Accuracy(**options)
        one_batch.process(None, samples)
        assert tasks.evaluate(6) == {
            f'task0_{k}': v for k, v in one_batch.evaluate(6).items()}
        top1 = 'accuracy/top1_thr-0.00' if key == 'pred_score' else \
            'accuracy/top1'
        assert top1 in metrics


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_batched_accuracy_of_cuda_batches():
    """Scores on the GPU (the copies queued, the results stored a batch
    later): mmpretrain's Accuracy's results and metrics."""
    from mmpretrain.evaluation.metrics import Accuracy
    from mmpretrain.structures import DataSample

    from mmsmlp.evaluation import BatchedAccuracy
    torch.manual_seed(0)
    upstream, batched = Accuracy(topk=(1, 5)), BatchedAccuracy(topk=(1, 5))
    for batch in range(4):
        scores = torch.randn(64, 100, device='cuda').softmax(1)
        samples = [DataSample().set_pred_score(score).set_gt_label(
            torch.tensor([i % 100], device='cuda')).to_dict()
            for i, score in enumerate(scores)]
        upstream.process(None, samples)
        batched.process(None, samples)
    for ours, theirs in zip(batched.results, upstream.results, strict=True):
        for name in theirs:
            assert torch.equal(ours[name], theirs[name]), name
    assert batched.evaluate(256) == upstream.evaluate(256)


def preprocessor_batch(labels, scores=None):
    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(len(labels))
    samples = []
    for i, label in enumerate(labels):
        sample = DataSample().set_gt_label(label)
        if scores is not None:
            sample.set_gt_score(scores[i])
        samples.append(sample)
    return {'inputs': torch.randint(0, 256, (len(labels), 3, 16, 16),
                                    generator=gen, dtype=torch.uint8),
            'data_samples': samples}


@pytest.mark.parametrize('case', ['single', 'eval', 'several', 'scores'])
def test_batched_preprocessor_equals_mmpretrains(case, monkeypatch):
    """BatchedClsDataPreprocessor gives what mmpretrain's ClsDataPreprocessor
    gives, with the ImageNet config's options and Mixup/CutMix (same random
    draws): images, every sample's label, one-hot score and num_classes;
    batches it leaves to upstream (several labels per sample, given scores)
    too."""
    from mmpretrain.models.utils.data_preprocessor import ClsDataPreprocessor

    from mmsmlp.models import BatchedClsDataPreprocessor
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs/smlpnet/smlpnet-t_8xb128_in1k.py'))
    options = {k: v for k, v in cfg.data_preprocessor.items() if k != 'type'}
    options.update(num_classes=10, batch_augments=cfg.model.train_cfg)
    assert cfg.data_preprocessor.type == 'BatchedClsDataPreprocessor'
    # upstream's data preprocessor with upstream's Mixup and CutMix
    upstream_options = copy.deepcopy(options)
    for augment in upstream_options['batch_augments']['augments']:
        augment['type'] = augment['type'].replace('Async', '')
    assert [a['type'] for a in upstream_options['batch_augments']['augments']
            ] == ['Mixup', 'CutMix']
    labels = [i * 7 % 10 for i in range(12)]
    scores = None
    if case == 'several':
        labels[3] = [1, 4]
    if case == 'scores':
        scores = torch.rand(12, 10)
    outputs = []
    for cls in (ClsDataPreprocessor, BatchedClsDataPreprocessor):
        if cls is BatchedClsDataPreprocessor and case in ('single', 'eval'):
            # its own path, not upstream's per-sample one-hot
            from mmpretrain.models.utils import data_preprocessor
            monkeypatch.setattr(data_preprocessor, 'batch_label_to_onehot',
                                None)
        np.random.seed(0)
        torch.manual_seed(0)
        outputs.append(
            cls(**(upstream_options if cls is ClsDataPreprocessor else
                   options))(preprocessor_batch(labels, scores),
                             training=case != 'eval'))
    theirs, ours = outputs
    assert torch.equal(ours['inputs'], theirs['inputs'])
    assert len(ours['data_samples']) == len(theirs['data_samples'])
    for a, b in zip(ours['data_samples'], theirs['data_samples']):
        for key in ('gt_label', 'gt_score'):
            assert a.get(key).dtype == b.get(key).dtype, key
            assert torch.equal(a.get(key), b.get(key)), key
        assert a.num_classes == b.num_classes == 10
    if case == 'single':  # Mixup/CutMix acted: soft scores
        scores = torch.stack([s.gt_score for s in ours['data_samples']])
        assert scores.dtype.is_floating_point
        assert not torch.equal(scores, scores.round())


class _Recorded(torch.Tensor):
    """A CPU tensor that says it is on CUDA and records its
    ``record_stream`` calls by memory block."""
    calls = []

    @property
    def is_cuda(self):
        return True

    def record_stream(self, stream):
        _Recorded.calls.append(self.untyped_storage().data_ptr())


def test_side_stream_records_each_memory_block_once():
    """The side-stream preprocessor's outputs are recorded on the training
    stream once per memory block: each sample's label and score are views
    of the batch's two tensors (one call each, not one per sample)."""
    from mmpretrain.structures import DataSample

    from mmsmlp.models.data_preprocessor import _record_stream
    inputs = torch.zeros(4, 3, 8, 8).as_subclass(_Recorded)
    labels = torch.arange(4).as_subclass(_Recorded)
    scores = torch.eye(4).as_subclass(_Recorded)
    samples = [DataSample().set_gt_label(label).set_gt_score(score)
               for label, score in zip(labels.split(1), scores)]
    _Recorded.calls.clear()
    _record_stream({'inputs': inputs, 'data_samples': samples}, 'stream')
    assert sorted(_Recorded.calls) == sorted(
        t.untyped_storage().data_ptr() for t in (inputs, labels, scores))


def test_in1k_configs_evaluate_with_batched_accuracy():
    for name in ('smlpnet/smlpnet-t_8xb128_in1k.py',
                 'quickstart/smlpnet-mini_1xb32_synthetic-in1k-format.py'):
        cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', name))
        for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
            assert evaluator.type == 'BatchedAccuracy'
            assert tuple(evaluator.topk) == (1, 5)


def test_train_speed_tool_prints_its_figures(tmp_path):
    """tools/analysis_tools/train_speed.py at a tiny size on the CPU: each
    figure is printed (values are not checked: speed is measured on a GPU)."""
    quick = osp.join(REPO_ROOT, 'configs', 'quickstart',
                     'smlpnet-mini_1xb32_synthetic-in1k-format.py')
    out = run_tool(
        'analysis_tools/train_speed.py', quick, '--peer', quick,
        '--data', str(tmp_path / 'data'), '--work-dir',
        str(tmp_path / 'work'), '--images', '40', '--val-images', '20',
        '--long-side', '72', '96', '--repeats', '2', '--workers', '1',
        '--batch', '8', '--size', '64', '--iters', '12', '--warmup-iters',
        '2', '--restart-iters', '1', '--val-skip', '1', '--bare-iters', '2',
        '--bare-warmup', '1', '--loader-batches', '2',
        '--transform-images', '4', '--parts', 'bare', 'step', 'loader',
        'transforms', 'e2e')
    number = r'[0-9.]+'
    assert re.search(rf'\[main\] bare: {number} img/s training step, '
                     rf'{number} img/s inference', out), out
    assert re.search(rf'\[main\] train_step: {number} img/s', out)
    assert re.search(rf'\[main\] loader alone, sustained: {number} img/s',
                     out)
    assert re.search(r'\[main\] transforms, ms per image on one core: '
                     r'CheckedLoadImageFromFile', out)
    for run in ('main', 'peer'):
        assert re.search(
            rf'\[{run}\] tools/train.py: {number} img/s steady .* '
            rf'validation {number} img/s', out), out
    rows = [line for line in out.splitlines() if line.startswith('| ')]
    assert [r.split(' | ')[0] for r in rows[1:]] == ['| main', '| peer']
    # bare step, train_step, loader, e2e and its ratio to the bare step, ...
    # validation and its ratio to bare inference
    assert re.search(
        rf'^\| main \| 8 \| {number} \| {number} \| {number} \| {number} '
        rf'\| {number}x \| .* \| {number} \| {number} \| {number}x \|$',
        rows[1]), rows


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_fast_paths_equal_upstream_on_cuda():
    """On CUDA (foreach AdamW, foreach EMA kernels): sMLPNet-T's training
    steps through the config's optimizer wrapper with merged groups, and the
    foreach EMA, equal mmengine's defaults bit for bit."""
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs/smlpnet/smlpnet-t_8xb128_in1k.py'))
    torch.manual_seed(0)
    model_a = MODELS.build(cfg.model).cuda()
    model_b = copy.deepcopy(model_a)
    wrappers = []
    for model, constructor in ((model_a, 'DefaultOptimWrapperConstructor'),
                               (model_b, 'GroupedOptimWrapperConstructor')):
        optim = copy.deepcopy(cfg.optim_wrapper)
        optim.update(constructor=constructor, type='AmpOptimWrapper',
                     dtype='bfloat16', loss_scale=dict(enabled=False))
        wrappers.append(build_optim_wrapper(model, optim))
    emas = [ExponentialMovingAverage(model_a, momentum=4e-5),
            ForeachEMA(model_b, momentum=4e-5)]
    x = torch.randn(8, 3, 224, 224, device='cuda')
    y = torch.randint(0, 1000, (8, ), device='cuda')
    for _ in range(3):
        # the same gradients for both (backward kernels need not be
        # deterministic); then each optimizer's and EMA's own update
        with wrappers[0].optim_context(model_a):
            loss = torch.nn.functional.cross_entropy(
                model_a(x, mode='tensor').float(), y)
        loss.backward()
        for a, b in zip(model_a.parameters(), model_b.parameters()):
            b.grad = a.grad.clone()
        for model, wrapper, ema in zip((model_a, model_b), wrappers, emas):
            wrapper.step()
            wrapper.zero_grad()
            ema.update_parameters(model)
    # parameters only: model_b ran no forward (no BatchNorm statistics)
    for a, b in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(a, b)
    for a, b in zip(emas[0].module.parameters(), emas[1].module.parameters()):
        assert torch.equal(a, b)


def test_train_speed_tool_profiles_tools_train(tmp_path):
    """--parts e2e-profile profile on the CPU at a tiny size: the
    tools/train.py subprocess and the same run in-process are profiled;
    every range of an iteration (loader wait, before-iteration hooks,
    train_step's parts, each after-iteration hook by name) is printed and
    written once per profiled iteration, with the processes' thread and
    worker facts, CPU use and load; and a table sets both side by side.
    Values are not checked against speeds (measured on a GPU), only that
    they are numbers and that the ranges cover the profiled iterations."""
    quick = osp.join(REPO_ROOT, 'configs', 'quickstart',
                     'smlpnet-mini_1xb32_synthetic-in1k-format.py')
    out_dir = tmp_path / 'out'
    count = 2
    out = run_tool(
        'analysis_tools/train_speed.py', quick, '--data',
        str(tmp_path / 'data'), '--work-dir', str(tmp_path / 'work'),
        '--out-dir', str(out_dir), '--images', '20', '--val-images', '10',
        '--long-side', '72', '96', '--repeats', '2', '--workers', '1',
        '--batch', '4', '--size', '64', '--iters', '10', '--warmup-iters',
        '2', '--restart-iters', '1', '--val-skip', '0', '--profile-iters',
        str(count), '--rows', '5', '--parts', 'e2e-profile', 'profile')
    steps = ('train_step: optim_context', 'train_step: data preprocessor',
             'train_step: forward + loss',
             'train_step: parse losses + backward',
             'train_step: optimizer step',
             'train_step: after optimizer step (zero_grad, log vars)')
    # the quick-start config's hooks with an after_train_iter, each in a
    # range named by it (hooks of one priority share one)
    quick_cfg = Config.fromfile(quick)
    hooks = (quick_cfg.default_hooks.runtime_info.type, 'FiniteLossHook',
             'LoggerHook', 'ParamSchedulerHook', 'SafeCheckpointHook',
             'IterTimestampHook')
    assert hooks[0] == 'DeferredRuntimeInfoHook'
    with open(out_dir / 'train_speed.json') as f:
        rows = json.load(f)
    assert [r['name'] for r in rows] == ['main']
    number = r'[0-9]+\.[0-9]+'
    for part, process in (('e2e-profile', 'train.py'),
                          ('profile', 'train_speed.py')):
        with open(out_dir / f'main_{part}.json') as f:
            summary = json.load(f)
        assert rows[0][part]['profile'] == summary
        assert (out_dir / f'main_{part}.txt').read_text().strip() in out
        for suffix in ('_ops.txt', '_python.txt'):
            assert (out_dir / f'main_{part}{suffix}').stat().st_size > 0
        # the unprofiled iterations of the same run, timed apart
        assert rows[0][part]['iter_s'] > 0
        assert summary['window'] == dict(
            first_iter=2, last_iter=2 + 3 * count - 1, count=count, epoch=0,
            epoch_after=0)
        ranges = summary['ranges_ms']
        assert list(ranges)[:2 + len(steps)] == [
            'loader wait', 'before_train_iter hooks', *steps]
        hook_ranges = list(ranges)[2 + len(steps):]
        assert sorted(
            name for r in hook_ranges
            for name in r[len('after_train_iter: '):].split(', ')) == \
            sorted(hooks), hook_ranges
        assert hook_ranges[-1] == 'after_train_iter: IterTimestampHook'
        for name, ms in ranges.items():
            assert isinstance(ms, float) and ms >= 0, (name, ms)
            assert summary['range_counts'][name] == count, name
            assert re.search(rf'^    {re.escape(name)} +{number} ms$', out,
                             re.M), name
        assert ranges['train_step: forward + loss'] > 0
        assert ranges['train_step: parse losses + backward'] > 0
        # the ranges follow one another through the profiled iterations
        wall = summary['profiled_wall_ms']
        assert 0.8 * wall < sum(ranges.values()) < 1.1 * wall, (ranges, wall)
        for key in ('wall_ms', 'kernel_ms', 'aten_ops', 'launches',
                    'host_reads', 'syncs'):
            assert isinstance(summary[key], (int, float)) and \
                summary[key] >= 0, key
        assert summary['aten_ops'] > 0
        assert summary['top_aten_ops'][0]['name'].startswith('aten::')
        assert len(summary['top_aten_ops']) == 5
        assert summary['cprofile_top'] and all(
            r['cumulative_ms'] >= 0 and r['calls'] > 0
            for r in summary['cprofile_top'])
        facts = summary['facts']
        assert facts['process'] == process
        assert facts['torch_threads'] >= 1
        assert facts['affinity_cpus'] >= 1
        assert facts['workers'] == 1 and facts['persistent_workers'] is True
        assert facts['mp_start_method'] == 'fork'  # mmengine's default
        assert facts['child_processes'] >= 1  # the loader's worker
        assert all(n >= 1 for n in facts['child_threads'])
        for key in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'cv2_threads',
                    'cudnn_benchmark', 'main_process_threads'):
            assert key in facts
        for key in ('load_average_before', ):
            assert len(facts[key]) == 3
        assert len(summary['load_average_after']) == 3
        cpu = summary['cpu']
        assert cpu['main_process_cores'] > 0
        assert cpu['threads_cores']['main thread'] > 0
        for key in ('main_process_cpu_ms', 'children_cores',
                    'host_busy_cores', 'host_cores'):
            assert cpu[key] >= 0, key
        assert re.search(
            rf'\[main\] {part}: .* unprofiled iterations of the same run: '
            rf'{number} s/iter steady', out), out
        assert (out_dir / 'main_e2e-profile_tools_train.log').exists()
        for fact in ('torch_threads=', 'affinity_cpus=', 'OMP_NUM_THREADS=',
                     'MKL_NUM_THREADS=', 'cv2_threads=', 'workers=1',
                     'persistent_workers=True', 'mp_start_method=fork',
                     'load_average_before='):
            assert re.search(rf'\[profile main_{part}\][^[]*facts: .*'
                             f'{re.escape(fact)}', out), fact
    # side by side: each range, for tools/train.py and in-process
    assert '| | tools/train.py (e2e) | tools/train.py (e2e-profile) | ' \
        'in-process Runner (profile) | e2e-profile - profile |' in out
    for name in ('loader wait', *steps, 'torch_threads', 'workers'):
        assert re.search(
            rf'^\| {re.escape(name)} \| - \| \S+ \| \S+ \| \S+ \|$', out,
            re.M), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_config_data_path_does_not_wait_for_the_gpu():
    """The ImageNet config's data preprocessor with its Mixup/CutMix, on a
    pinned batch as the loader gives it, runs with torch.cuda's sync debug
    mode raising on any host synchronisation, and gives what it gives on the
    CPU (same random draws)."""
    from mmengine.registry import MODELS, init_default_scope
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs/smlpnet/smlpnet-t_8xb128_in1k.py'))
    options = {k: v for k, v in cfg.data_preprocessor.items() if k != 'type'}
    options.update(num_classes=10, batch_augments=cfg.model.train_cfg)
    labels = [i * 7 % 10 for i in range(12)]
    outputs = []
    for device in ('cpu', 'cuda'):
        preprocessor = MODELS.build(
            dict(type=cfg.data_preprocessor.type, **options)).to(device)
        for seed in range(4):  # both augments (RandomBatchAugment's choice)
            batch = preprocessor_batch(labels, None)
            batch['inputs'] = batch['inputs'].pin_memory()
            np.random.seed(seed)
            torch.manual_seed(seed)
            if device == 'cuda':
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode('error')
            try:
                out = preprocessor(batch, training=True)
            finally:
                torch.cuda.set_sync_debug_mode('default')
            outputs.append((device, out))
    for (_, cpu), (_, gpu) in zip(outputs[:4], outputs[4:]):
        torch.testing.assert_close(gpu['inputs'].cpu(), cpu['inputs'])
        for a, b in zip(gpu['data_samples'], cpu['data_samples']):
            assert torch.equal(a.gt_label.cpu(), b.gt_label)
            torch.testing.assert_close(a.gt_score.cpu(), b.gt_score)


def test_train_speed_summary_of_validation_times():
    """The validation figures from IterTimestampHook's record: the full
    batches after --val-skip (``val``), the last partial batch apart
    (``val_all``), the data wait and the s/batch of each quarter."""
    from types import SimpleNamespace
    tool = train_speed_tool()
    args = SimpleNamespace(warmup_iters=0, restart_iters=0, val_skip=1,
                           workers=2)
    # 10 batches of 4 (the last of 2 images): 0.1 s apart, each waiting
    # 0.02 s for data; the first starts late, the last takes 1 s
    after = [1.0 + 0.1 * i for i in range(9)] + [2.8]
    times = dict(train=[], val=[('start', 0.)] +
                 [(i, t) for i, t in enumerate(after)],
                 val_before=[(i, t - 0.08) for i, t in enumerate(after)])
    out = tool.summarize(times, 8, 4, args, val_images=38)
    assert out['val'] == pytest.approx(4 / 0.1)  # batches 2-8 after 1
    assert out['val_all'] == pytest.approx((4 * 7 + 2) / 1.7)
    assert out['val_wait_s'] == pytest.approx(0.02)
    assert out['val_quarters_s'] == pytest.approx([0.1] * 4)
    # whole batches only: the last one counts as a full one
    out = tool.summarize(times, 8, 4, args, val_images=40)
    assert 'val_all' not in out
    assert out['val'] == pytest.approx(4 * 8 / 1.7)


def test_train_speed_summary_counts_full_collections_in_training():
    """Full garbage collections (IterTimestampHook's ``gc`` record) that
    start within the timed training iterations are counted, with their
    time, and the slowest iteration is reported."""
    from types import SimpleNamespace
    tool = train_speed_tool()
    args = SimpleNamespace(warmup_iters=2, restart_iters=0, val_skip=1,
                           workers=2)
    ends = [0.1 * i for i in range(1, 11)]
    ends[6] += 0.5  # iteration 6 stalled by a collection
    ends[7:] = [t + 0.5 for t in ends[7:]]
    train = [(0, i, t - 0.09, t) for i, t in enumerate(ends)]
    gc_spans = [(0.05, 0.06, 10),  # before the timed iterations
                (0.62, 1.1, 0), (1.2, 1.25, 3)]
    out = tool.summarize(dict(train=train, val=[], gc=gc_spans), 8, 4, args)
    assert out['gc_full'] == 2
    assert out['gc_full_s'] == pytest.approx(0.53)
    assert out['slowest_iter_s'] == pytest.approx(0.6)
    # one in the first timed iteration (2: from iteration 1's end) counts
    gc_spans.append((0.21, 0.22, 0))
    out = tool.summarize(dict(train=train, val=[], gc=gc_spans), 8, 4, args)
    assert out['gc_full'] == 3
    # records written before the tool tracked collections
    assert tool.summarize(dict(train=train, val=[]), 8, 4,
                          args)['gc_full'] == 0


def test_gc_freeze_hook_freezes_for_the_loop_only(monkeypatch):
    """The objects that exist when the loop starts leave the collector's
    generations (frozen once per run) and come back after the run; what
    the caller froze before stays frozen. (Frozen counts fall as frozen
    objects are freed, so they are compared loosely.)"""
    import gc

    from mmsmlp.engine.hooks import GCFreezeHook
    gc.unfreeze()  # a run stopped by an exception earlier in this process
    freezes = []
    freeze = gc.freeze
    monkeypatch.setattr(gc, 'freeze', lambda: freezes.append(1) or freeze())
    built = [object() for _ in range(10)]  # a list: the collector tracks it
    hook = GCFreezeHook()
    try:
        hook.before_train(None)
        assert gc.get_freeze_count() > 1000 and len(freezes) == 1
        assert gc.is_tracked(built)
        assert all(o is not built for o in gc.get_objects(2))
        hook.before_test(None)  # once per run
        assert len(freezes) == 1
    finally:
        hook.after_run(None)
    assert gc.get_freeze_count() == 0
    assert any(o is built for o in gc.get_objects(2))
    hook.before_train(None)  # the next run freezes again
    hook.after_run(None)
    assert len(freezes) == 2 and gc.get_freeze_count() == 0
    off = GCFreezeHook(enabled=False)
    off.before_train(None)
    assert gc.get_freeze_count() == 0 and len(freezes) == 2
    off.after_run(None)
    # objects someone else froze stay frozen after the run
    freeze()
    try:
        theirs = gc.get_freeze_count()
        hook.before_train(None)
        hook.after_run(None)
        assert gc.get_freeze_count() > theirs // 2
    finally:
        gc.unfreeze()
    for name in ('smlpnet/smlpnet-t_8xb128_in1k.py',
                 'mask_rcnn/mask-rcnn_smlpnet-s_fpn_1x_coco.py',
                 'upernet/smlpnet-b_upernet_8xb2-160k_ade20k-512x512.py'):
        cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', name))
        assert 'GCFreezeHook' in [h.type for h in cfg.custom_hooks], name


def test_sync_count_is_not_the_modes_own_notice():
    """Setting torch.cuda's sync debug mode warns that the mode is a
    prototype (torch/csrc/cuda/Module.cpp, the text below): the one host
    synchronisation the tool reported per GPU augmentation call until
    2026-12-05. Only the mode's report of one (c10's
    warn_or_error_on_sync) counts."""
    tool = train_speed_tool()
    notice = ('Synchronization debug mode is a prototype feature and does '
              'not yet detect all synchronizing operations (Triggered '
              'internally at /pytorch/torch/csrc/cuda/Module.cpp:1003.)')
    assert not tool.is_sync_warning(UserWarning(notice))
    assert tool.is_sync_warning(
        UserWarning('called a synchronizing CUDA operation'))


def test_train_speed_on_several_gpus_counts_every_gpus_images(tmp_path):
    """--gpus N: each process's epoch is N times shorter, and images/s
    count the N processes' batches; --gpus 0 and a profile of several
    processes are refused."""
    tool = train_speed_tool()
    quick = osp.join(REPO_ROOT, 'configs', 'quickstart',
                     'smlpnet-mini_1xb32_synthetic-in1k-format.py')
    for bad in (['--gpus', '0'], ['--gpus', '2', '--parts', 'e2e-profile']):
        with pytest.raises(SystemExit):
            tool.parse_args([quick, *bad])
    train_ann = tmp_path / 'train.txt'
    train_ann.write_text(''.join(f'{i}.JPEG 0\n' for i in range(640)))
    ann_files = (str(tmp_path), str(train_ann), str(train_ann))
    lengths, steady = {}, {}
    # 4 iterations of 0.1 s in each process
    times = dict(train=[(0, i, 0.1 * i, 0.1 * i + 0.1) for i in range(4)],
                 val=[], val_before=[], gc=[])
    for gpus in (None, 2):
        args = tool.parse_args(
            [quick, '--workers', '0', '--batch', '32', '--amp', 'none',
             '--warmup-iters', '0', '--restart-iters', '0'] +
            (['--gpus', str(gpus)] if gpus else []))
        cfg, work_dir, lengths[gpus] = tool.e2e_config(
            f'run{gpus}', quick, None, args, ann_files, str(tmp_path), 20)
        with open(osp.join(work_dir, tool.TIMES_FILE), 'w') as f:
            json.dump(times, f)
        steady[gpus] = tool.read_times(work_dir, cfg, args)['e2e_steady']
    assert lengths == {None: 20, 2: 10}
    assert steady[None] == pytest.approx(32 / 0.1)
    assert steady[2] == pytest.approx(2 * 32 / 0.1)

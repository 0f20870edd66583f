# Copyright (c) mmsmlp contributors. All rights reserved.
"""The ImageNet recipe against the official training code (microsoft/SPACH
main.py, DeiT's, with timm 0.3.2): the learning-rate curve, the model EMA
kept beside the trained model, per-rank randomness, the dropped last batch
and mixed precision."""
import copy
import glob
import json
import math
import os
import os.path as osp
from contextlib import contextmanager

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper
from mmengine.registry import PARAM_SCHEDULERS, init_default_scope

from .conftest import REPO_ROOT, read_scalars, run_tool, run_two_cpu_ranks

IN1K = {
    arch: osp.join(REPO_ROOT, 'configs', 'smlpnet',
                   f'smlpnet-{arch}_8xb128_in1k.py')
    for arch in 'tsb'
}
QUICKSTART = osp.join(REPO_ROOT, 'configs', 'quickstart',
                      'smlpnet-mini_1xb32_synthetic-in1k-format.py')


# ------------------------------------------------- learning-rate curve ----
def official_epoch_lrs(base_lr, epochs=300, warmup_epochs=20, warmup_lr=1e-6,
                       min_lr=1e-5):
    """The learning rate of each epoch of the official script: timm 0.3.2's
    ``create_scheduler`` for ``--sched cosine`` (CosineLRScheduler with
    t_initial=epochs, cycle_limit=1, t_mul=1, decay_rate=0.1 unused,
    warmup_prefix=False, no noise) driven by DeiT's ``main.py`` loop,
    transcribed."""

    def get_lr(t):  # CosineLRScheduler._get_lr
        if t < warmup_epochs:
            return warmup_lr + t * (base_lr - warmup_lr) / warmup_epochs
        i = t // epochs
        t_i = epochs
        t_curr = t - epochs * i
        if i < 1:  # cycle_limit
            return min_lr + 0.5 * (base_lr - min_lr) * (
                1 + math.cos(math.pi * t_curr / t_i))
        return min_lr

    lr = warmup_lr  # CosineLRScheduler.__init__: update_groups(warmup_lr)
    lrs = []
    for epoch in range(epochs):
        lrs.append(lr)  # train_one_epoch(...)
        lr = get_lr(epoch)  # lr_scheduler.step(epoch)
    return lrs


def config_epoch_lrs(cfg, base_lr=None, epoch_length=None):
    """The learning rate at the start of each epoch (and, with
    ``epoch_length``, of each iteration) from the config's param_scheduler,
    stepped as mmengine's ParamSchedulerHook steps it."""
    init_default_scope('mmpretrain')
    optimizer = dict(cfg.optim_wrapper.optimizer)
    if base_lr is not None:
        optimizer['lr'] = base_lr  # as auto_scale_lr would set it
    wrapper = build_optim_wrapper(
        torch.nn.Linear(2, 2), dict(type='OptimWrapper', optimizer=optimizer))
    schedulers = []
    for s in cfg.param_scheduler:
        s = dict(s)
        if s.pop('convert_to_iter_based', False):
            s = PARAM_SCHEDULERS.get(s.pop('type')).build_iter_from_epoch(
                wrapper, epoch_length=epoch_length, **s)
        else:
            s = PARAM_SCHEDULERS.build(s, default_args=dict(optimizer=wrapper))
        schedulers.append(s)
    lrs = []
    for _ in range(cfg.train_cfg.max_epochs):
        for _ in range(epoch_length or 1):
            lrs.append(wrapper.param_groups[0]['lr'])
            for s in schedulers:
                if not s.by_epoch:
                    s.step()
        for s in schedulers:
            if s.by_epoch:
                s.step()
    return lrs


@pytest.mark.parametrize('arch', 'tsb')
def test_lr_curve_is_the_official_one(arch):
    cfg = Config.fromfile(IN1K[arch])
    assert cfg.train_cfg.max_epochs == 300
    assert cfg.param_scheduler[0].t_initial == cfg.train_cfg.max_epochs
    got = config_epoch_lrs(cfg)
    want = official_epoch_lrs(cfg.optim_wrapper.optimizer.lr)
    assert got == pytest.approx(want, rel=1e-12, abs=0)
    # chosen epochs against the formula written out
    peak, low, start = 1e-3, 1e-5, 1e-6
    assert got[0] == got[1] == pytest.approx(start)
    assert got[11] == pytest.approx(start + 10 * (peak - start) / 20)
    for epoch in (21, 151, 299):
        t = epoch - 1
        assert got[epoch] == pytest.approx(
            low + (peak - low) * (1 + math.cos(math.pi * t / 300)) / 2)


def test_lr_curve_scales_its_peak_only():
    """--auto-scale-lr (e.g. 4 GPUs x 128 = 512 images: lr 5e-4) scales the
    peak, as the official script scales `--lr`; the warm-up start and the
    minimum stay absolute, as timm's."""
    cfg = Config.fromfile(IN1K['t'])
    got = config_epoch_lrs(cfg, base_lr=5e-4)
    assert got == pytest.approx(official_epoch_lrs(5e-4), rel=1e-12, abs=0)


def test_lr_curve_per_iteration_conversion():
    """`convert_to_iter_based=True` draws the same curve per iteration: at
    each epoch's first iteration the per-epoch value, linear within the
    warm-up."""
    cfg = Config.fromfile(IN1K['t'])
    per_epoch = config_epoch_lrs(cfg)
    cfg.param_scheduler[0].convert_to_iter_based = True
    per_iter = config_epoch_lrs(cfg, epoch_length=4)
    assert per_iter[::4] == pytest.approx(per_epoch, rel=1e-12)
    # in the warm-up (with the 1-epoch delay) it rises in quarter steps
    assert per_iter[9] == pytest.approx(
        (per_epoch[2] * 3 + per_epoch[3]) / 4, rel=1e-9)


def test_timm_cosine_lr_rejects_bad_arguments():
    from mmsmlp.engine import TimmCosineLR
    wrapper = build_optim_wrapper(
        torch.nn.Linear(2, 2),
        dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.1)))
    with pytest.raises(ValueError, match='warmup_t'):
        TimmCosineLR(wrapper, t_initial=10, warmup_t=20)
    with pytest.raises(ValueError, match='t_initial'):
        TimmCosineLR(wrapper, t_initial=0)


# ------------------------------------------------------ the resolved rest ----
def test_in1k_randomness_last_batch_ema_amp_resolved():
    cfg = Config.fromfile(IN1K['s'])
    assert cfg.randomness.seed == 0 and cfg.randomness.diff_rank_seed
    assert cfg.train_dataloader.drop_last is True
    assert cfg.optim_wrapper.type == 'MixedPrecisionOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'auto'
    hooks = {h.type: h for h in cfg.custom_hooks}
    assert 'EMAHook' not in hooks
    ema = hooks['RawAndEMAHook']
    assert ema.momentum == pytest.approx(1 - 0.99996)
    assert ema.update_buffers is True  # timm's ModelEma averages buffers
    assert 'EpochSeedHook' in hooks


# ------------------------------------------------------------------- EMA ----
def test_ema_averages_parameters_and_buffers_as_timm():
    """RawAndEMAHook(update_buffers=True) updates as timm's ModelEma (the
    official's) after the first step: every floating entry of the state
    dict, BatchNorm statistics included, becomes ema * decay + (1 - decay) *
    model. (timm starts averaging from the initial weights, mmengine from
    the weights after the first step: a difference of 1 - decay = 4e-5 of
    one step's change.)"""
    from types import SimpleNamespace

    from mmsmlp.engine import RawAndEMAHook
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1),
                                torch.nn.BatchNorm2d(4))
    decay = 0.9
    hook = RawAndEMAHook(momentum=1 - decay, update_buffers=True)
    runner = SimpleNamespace(model=model, iter=0)
    hook.before_run(runner)
    reference = None
    for step in range(5):
        runner.iter = step
        model.train()
        model(torch.randn(8, 3, 5, 5))  # moves the BatchNorm statistics
        with torch.no_grad():
            for p in model.parameters():  # as an optimizer step would
                p.add_(torch.randn_like(p))
        hook.after_train_iter(runner, step)
        state = model.state_dict()
        if reference is None:
            reference = {k: v.clone() for k, v in state.items()}
        else:  # timm ModelEma.update
            for k, v in reference.items():
                if v.dtype.is_floating_point:
                    v.copy_(v * decay + (1. - decay) * state[k])
    ema = hook.ema_model.module.state_dict()
    for key in ('0.weight', '1.weight', '1.running_mean', '1.running_var'):
        torch.testing.assert_close(ema[key], reference[key])
        assert not torch.allclose(ema[key], state[key])


def ema_run_config(tmp_path):
    """The quick-start config with the in1k recipe's EMA hook (a faster
    momentum, so that a few iterations move it) and the timm scheduler on 2
    epochs: a warm-up epoch, then the cosine's middle."""
    in1k = Config.fromfile(IN1K['t'])
    ema = dict(in1k.custom_hooks[0], momentum=0.2)
    assert ema['type'] == 'RawAndEMAHook'
    path = tmp_path / 'ema_run.py'
    path.write_text(
        f'_base_ = [{QUICKSTART!r}]\n'
        f'custom_hooks = [{ema!r}, dict(type="EpochSeedHook")]\n'
        'param_scheduler = [dict(type="TimmCosineLR", t_initial=2, '
        'lr_min=1e-4, warmup_t=1, warmup_lr_init=1e-5)]\n'
        f'randomness = {dict(in1k.randomness)!r}\n')
    return str(path)


def quick_options(data_root, epochs):
    opts = [f'train_cfg.max_epochs={epochs}', 'train_cfg.val_interval=1',
            'default_hooks.checkpoint.interval=1',
            'default_hooks.logger.interval=1']
    for split in ('train', 'val', 'test'):
        opts += [f'{split}_dataloader.dataset.data_root={data_root}',
                 f'{split}_dataloader.num_workers=0',
                 f'{split}_dataloader.persistent_workers=False']
    return ['--cfg-options', *opts]


def test_raw_and_ema_reported_saved_and_tested(imagenet_root, tmp_path):
    config = ema_run_config(tmp_path)
    work_dir = str(tmp_path / 'work')
    run_tool('train.py', config, '--work-dir', work_dir,
             *quick_options(imagenet_root, 2))
    scalars = read_scalars(work_dir)

    # the scheduler through the Runner: lr of each epoch's iterations
    lrs = {}
    for s in scalars:
        if 'lr' in s:
            lrs.setdefault(s['epoch'], set()).add(s['lr'])
    base = 2e-3  # the quick-start config's AdamW lr
    middle = 1e-4 + (base - 1e-4) * (1 + math.cos(math.pi / 2)) / 2
    assert all(len(v) == 1 for v in lrs.values())
    assert {e: v.pop() for e, v in lrs.items()} == pytest.approx(
        {1: 1e-5, 2: middle})

    # every validation reports both: the trained model under the usual keys
    val = [s for s in scalars if 'accuracy/top1' in s]
    assert len(val) == 2
    assert all('ema/accuracy/top1' in s and 'ema/accuracy/top5' in s
               for s in val)

    # the checkpoint: trained weights in state_dict, EMA in ema_state_dict,
    # BatchNorm statistics averaged as well
    ckpt = torch.load(osp.join(work_dir, 'epoch_2.pth'), weights_only=True)
    raw, ema = ckpt['state_dict'], ckpt['ema_state_dict']
    for key in ('backbone.stages.0.0.smlp.mix_h.weight',
                'backbone.stages.0.0.norm1.running_mean',
                'backbone.stages.0.0.norm1.running_var'):
        assert not torch.equal(raw[key], ema['module.' + key]), key
    # one EMA update per training iteration
    assert int(ema['steps']) == max(s['iter'] for s in scalars if 'lr' in s)
    # tools/test.py: the same two sets of metrics as the last validation
    test_dir = str(tmp_path / 'test')
    log = run_tool('test.py', config, osp.join(work_dir, 'epoch_2.pth'),
                   '--work-dir', test_dir, *quick_options(imagenet_root, 2))
    assert 'ema/accuracy/top1' in log
    path = glob.glob(osp.join(test_dir, '2*', '2*.json'))[-1]
    with open(path) as f:
        tested = json.load(f)
    for key in ('accuracy/top1', 'ema/accuracy/top1', 'ema/accuracy/top5'):
        assert tested[key] == pytest.approx(val[-1][key]), key


def test_test_without_ema_weights_tests_once(imagenet_root, tmp_path):
    """A checkpoint without `ema_state_dict` (converted official weights)
    is tested once, under the usual keys."""
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(QUICKSTART)
    model = MODELS.build(cfg.model)
    path = str(tmp_path / 'plain.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    log = run_tool('test.py', ema_run_config(tmp_path), path, '--work-dir',
                   str(tmp_path / 'test'), *quick_options(imagenet_root, 1))
    assert 'accuracy/top1' in log and 'ema/accuracy' not in log
    assert 'has no `ema_state_dict`' in log


# ------------------------------------------------ per-rank randomness ----
def test_seed_plus_rank_and_common_sampler_on_two_processes(
        imagenet_root, tmp_path):
    """Two CPU processes (gloo) through mmengine's Runner with the in1k
    config's randomness, sampler and drop_last: rank r is seeded with 0 + r
    (as the official `args.seed + get_rank()`), so the epoch's random draws
    differ across ranks; the sampler's seed is common, so the ranks split
    one shuffled order; the last partial batch is dropped; a second epoch
    draws again. The config's wrapper (FlatReduceDDP) leaves both ranks
    with the same trained weights."""
    in1k = Config.fromfile(IN1K['t'])
    sampler = dict(in1k.train_dataloader.sampler)
    sampler.pop('_delete_', None)
    config = tmp_path / 'two_ranks.py'
    config.write_text(
        f'_base_ = [{QUICKSTART!r}]\n'
        f'randomness = {dict(in1k.randomness)!r}\n'
        'train_dataloader = dict(batch_size=8, num_workers=0, '
        'persistent_workers=False, '
        f'drop_last={in1k.train_dataloader.drop_last!r}, '
        f'sampler=dict(_delete_=True, **{sampler!r}), '
        f'dataset=dict(data_root={imagenet_root!r}, indices=36))\n'
        'train_cfg = dict(max_epochs=2, val_interval=10)\n'
        'val_dataloader = None\nval_cfg = None\nval_evaluator = None\n'
        'env_cfg = dict(dist_cfg=dict(backend="gloo"))\n'
        'default_hooks = dict(checkpoint=dict(interval=10))\n'
        f'model_wrapper_cfg = {dict(in1k.model_wrapper_cfg)!r}\n')
    work_dir = str(tmp_path / 'work')
    os.makedirs(work_dir)
    run_two_cpu_ranks('rank_probe.py', config, work_dir)

    def probe(rank, epoch):
        with open(osp.join(work_dir, f'rank{rank}_epoch{epoch}.json')) as f:
            return json.load(f)

    for epoch in (0, 1):
        r0, r1 = probe(0, epoch), probe(1, epoch)
        assert (r0['seed'], r1['seed']) == (0, 1)
        assert r0['torch'] != r1['torch'] and r0['numpy'] != r1['numpy']
        assert r0['sampler_seed'] == r1['sampler_seed']
        # RepeatAugSampler: 3 repeats of one shuffled order, dealt to ranks
        # (36 images / 2 ranks = 18 each); 18 // 8 = 2 full batches
        assert len(r0['indices']) == len(r1['indices']) == 18
        assert r0['indices'] != r1['indices']
        assert r0['batches'] == r1['batches'] == 2
    assert probe(0, 0)['torch'] != probe(0, 1)['torch']
    ends = []
    for rank in (0, 1):
        with open(osp.join(work_dir, f'rank{rank}_end.json')) as f:
            ends.append(json.load(f))
    assert [end['wrapper'] for end in ends] == ['FlatReduceDDP'] * 2
    assert ends[0]['trained'] == ends[1]['trained']
    # trained: both ranks' weights moved (together) from the initial ones
    assert ends[0]['initial'] == ends[1]['initial']
    assert ends[0]['trained'] != ends[0]['initial']


# ------------------------------------------------------ mixed precision ----
@contextmanager
def fake_cuda(monkeypatch, bf16):
    """A CUDA GPU with or without bf16, as far as the wrapper builders ask
    (there is none here); records the autocast the wrapper opens."""
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_wrapper
    import mmengine.runner.amp as amp
    opened = []

    @contextmanager
    def record_autocast(device_type, enabled=True, dtype=None,
                        cache_enabled=None):
        opened.append((device_type, dtype))
        yield

    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda: bf16)
    monkeypatch.setattr(amp_wrapper, 'is_cuda_available', lambda: True)
    monkeypatch.setattr(amp, 'get_device', lambda: 'cuda')
    monkeypatch.setattr(amp.torch, 'autocast', record_autocast)
    yield opened


def build_in1k_wrapper():
    cfg = Config.fromfile(IN1K['t'])
    init_default_scope('mmpretrain')
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1),
                                torch.nn.BatchNorm2d(4))
    return model, build_optim_wrapper(model, cfg.optim_wrapper)


@pytest.mark.parametrize('bf16,dtype,scaled', [(True, torch.bfloat16, False),
                                               (False, torch.float16, True)])
def test_in1k_mixed_precision_on_gpus(monkeypatch, bf16, dtype, scaled):
    with fake_cuda(monkeypatch, bf16) as opened:
        model, wrapper = build_in1k_wrapper()
        assert isinstance(wrapper, AmpOptimWrapper)
        with wrapper.optim_context(model):
            pass
    assert opened == [('cuda', dtype)]
    # fp16: dynamic loss scaling; bf16: none needed (fp32's exponent range)
    assert wrapper.loss_scaler.is_enabled() is scaled


def test_in1k_fp32_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    model, wrapper = build_in1k_wrapper()
    assert type(wrapper) is OptimWrapper
    loss = model(torch.randn(2, 3, 4, 4)).sum()
    wrapper.update_params(loss)  # trains


def test_in1k_adamw_is_fused_and_updates_as_the_default_adamw(monkeypatch):
    """The configs' AdamW is PyTorch's fused one (one launch per group;
    docs/benchmarks.md): with the configs' options and parameter groups
    (decay, and none on norms and biases), the same parameters after a few
    steps as the foreach AdamW, to float rounding."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config.fromfile(IN1K['t'])
    assert cfg.optim_wrapper.optimizer.fused is True
    init_default_scope('mmpretrain')
    inputs = torch.randn(5, 4, 3, 6, 6,
                         generator=torch.Generator().manual_seed(1))
    trained = {}
    for fused in (True, False):
        torch.manual_seed(0)
        # (no bias before the BatchNorm: its gradient is rounding noise,
        # which Adam's normalisation would amplify)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.BatchNorm2d(8),
            torch.nn.Conv2d(8, 4, 1))
        initial = [p.detach().clone() for p in model.parameters()]
        optim_cfg = copy.deepcopy(cfg.optim_wrapper)
        if not fused:
            optim_cfg.optimizer.update(fused=False, foreach=True)
        wrapper = build_optim_wrapper(model, optim_cfg)
        assert bool(wrapper.optimizer.defaults['fused']) is fused
        assert {g['weight_decay'] for g in wrapper.param_groups} == {0.0, 0.05}
        for x in inputs:
            wrapper.update_params(model(x).square().mean())
        trained[fused] = [p.detach().clone() for p in model.parameters()]
        assert not any(torch.equal(a, b)
                       for a, b in zip(initial, trained[fused]))
    for ours, default in zip(trained[True], trained[False]):
        torch.testing.assert_close(ours, default, rtol=1e-6, atol=1e-7)


def test_resume_keeps_the_configured_adamw_implementation(monkeypatch):
    """A checkpoint of the foreach AdamW resumes with the configs' fused
    one (PyTorch's load_state_dict would take the saved group options),
    and one of the fused AdamW with the foreach one when the config says
    ``fused=False``; the next steps give the unbroken run's parameters, to
    rounding."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    cfg = Config.fromfile(IN1K['t'])
    init_default_scope('mmpretrain')
    inputs = torch.randn(4, 4, 3, 6, 6,
                         generator=torch.Generator().manual_seed(2))

    def build(fused):
        torch.manual_seed(0)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.BatchNorm2d(8),
            torch.nn.Conv2d(8, 4, 1))
        optim_cfg = copy.deepcopy(cfg.optim_wrapper)
        if not fused:
            optim_cfg.optimizer.update(fused=False, foreach=True)
        return model, build_optim_wrapper(model, optim_cfg)

    for saved_fused in (False, True):
        model, wrapper = build(saved_fused)
        for x in inputs[:2]:
            wrapper.update_params(model(x).square().mean())
        checkpoint = copy.deepcopy(
            (model.state_dict(), wrapper.state_dict()))
        for x in inputs[2:]:  # the unbroken run
            wrapper.update_params(model(x).square().mean())
        resumed_model, resumed = build(not saved_fused)
        resumed_model.load_state_dict(checkpoint[0])
        resumed.load_state_dict(checkpoint[1])
        for group in resumed.optimizer.param_groups:
            assert bool(group['fused']) is not saved_fused
            assert bool(group['foreach']) is saved_fused
        steps = [s['step'] for s in resumed.optimizer.state.values()]
        assert steps and all(s.dtype == torch.float32 and s.item() == 2
                             for s in steps)
        for x in inputs[2:]:
            resumed.update_params(resumed_model(x).square().mean())
        for a, b in zip(resumed_model.parameters(), model.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_mixed_precision_dtype_is_checked():
    from mmsmlp.engine.optimizers import resolve_amp_dtype
    with pytest.raises(ValueError, match="'fp16' is not one of"):
        resolve_amp_dtype('fp16')
    assert resolve_amp_dtype('float16') == 'float16'

# Copyright (c) mmsmlp contributors. All rights reserved.
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

from .conftest import REPO_ROOT

CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO_ROOT, 'configs', '**', '*.py'),
                         recursive=True) if '_base_' not in p)


def test_configs_found():
    names = [osp.basename(p) for p in CONFIGS]
    for arch in 'tsb':
        assert f'smlpnet-{arch}_8xb128_in1k.py' in names


@pytest.mark.parametrize(
    'path', CONFIGS, ids=[osp.relpath(p, REPO_ROOT) for p in CONFIGS])
def test_config_builds_model(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports.imports == ['mmsmlp']
    init_default_scope(cfg.default_scope)
    model_cfg = cfg.model
    if model_cfg.get('backbone', {}).get('init_cfg'):
        model_cfg.backbone.init_cfg = None  # no ImageNet checkpoint in tests
    model = MODELS.build(model_cfg)
    assert type(model.backbone).__name__ == 'SMLPNet'


def test_in1k_recipe():
    cfg = Config.fromfile(
        osp.join(REPO_ROOT, 'configs/smlpnet/smlpnet-s_8xb128_in1k.py'))
    assert cfg.train_dataloader.batch_size * 8 == 1024
    assert cfg.optim_wrapper.optimizer.lr == 1e-3
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert cfg.optim_wrapper.paramwise_cfg.norm_decay_mult == 0
    assert cfg.optim_wrapper.paramwise_cfg.bias_decay_mult == 0
    assert cfg.auto_scale_lr.base_batch_size == 1024
    assert cfg.train_cfg.max_epochs == 300
    # the official curve (tests/test_recipe.py compares it epoch by epoch)
    [schedule] = cfg.param_scheduler
    assert schedule.type == 'TimmCosineLR'
    assert (schedule.t_initial, schedule.warmup_t, schedule.warmup_lr_init,
            schedule.lr_min, schedule.delay) == (300, 20, 1e-6, 1e-5, 1)
    assert cfg.model.backbone.drop_path_rate == 0.2
    assert cfg.model.head.loss.label_smooth_val == 0.1
    assert [a.alpha for a in cfg.model.train_cfg.augments] == [0.8, 1.0]
    assert cfg.train_dataloader.sampler.type == 'RepeatAugSampler'
    ema = [h for h in cfg.custom_hooks if h.type == 'RawAndEMAHook'][0]
    assert ema.momentum == pytest.approx(1 - 0.99996)
    steps = {t.type: t for t in cfg.train_pipeline}
    assert steps['RandomResizedCrop'].interpolation == 'bicubic'
    assert steps['RandAugment'].magnitude_level == 9
    assert steps['RandAugment'].magnitude_std == 0.5
    assert steps['RandomErasing'].erase_prob == 0.25
    tests = {t.type: t for t in cfg.test_pipeline}
    assert tests['ResizeEdge'].scale == 256
    assert tests['CenterCrop'].crop_size == 224
    drop_paths = {
        a: Config.fromfile(
            osp.join(REPO_ROOT, f'configs/smlpnet/smlpnet-{a}_8xb128_in1k.py')
        ).model.backbone.drop_path_rate
        for a in 'tsb'
    }
    assert drop_paths == {'t': 0.0, 's': 0.2, 'b': 0.3}

# Copyright (c) mmsmlp contributors. All rights reserved.
"""tools/analysis_tools/learning_check.py: the derived configs keep the
shipped recipes, the tool runs end to end at a tiny size on the CPU and
reports the evaluators' metrics; the harder options of the generators."""
import copy
import csv
import glob
import json
import math
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from mmsmlp.datasets.synthetic import (ALL_SHAPE_CLASSES, SHAPE_CLASSES,
                                       draw_shape, make_imagenet)
from mmsmlp.datasets.synthetic_ade20k import (CLASS_IDS, draw_scene,
                                              make_ade20k, object_classes)
from mmsmlp.datasets.synthetic_coco import make_coco, shape_kinds

from .conftest import import_tool, read_scalars, run_tool

lc = import_tool('analysis_tools/learning_check.py')


# ------------------------------------------------- the derived configs ----
def shipped(task, backbone, tmp_path):
    base = lc.CONFIGS[task][backbone]
    if '::' in base:
        stub = tmp_path / 'stub.py'
        stub.write_text(f'_base_ = {base!r}\n')
        base = str(stub)
    return Config.fromfile(base)


def types(pipeline):
    return [t['type'] for t in pipeline]


@pytest.mark.parametrize('task,backbone', [
    (t, b) for t in lc.CONFIGS for b in lc.CONFIGS[t]])
def test_derived_config_keeps_the_recipe(task, backbone, tmp_path):
    args = lc.parse_args(['--work-dir', str(tmp_path), '--iters', '300'])
    budget = dict(lc.BUDGETS['short'][task], iters=300)
    data_root = str(tmp_path / 'data')
    cfg = lc.derive_config(task, backbone, data_root, budget['data'],
                           budget, args)
    ref = shipped(task, backbone, tmp_path)

    # the optimizer (lr: scaled by tools/train.py --auto-scale-lr from the
    # config's own base batch size), its parameter groups, AMP on the GPU
    assert cfg.optim_wrapper.optimizer == ref.optim_wrapper.optimizer
    assert cfg.optim_wrapper.get('paramwise_cfg') == ref.optim_wrapper.get(
        'paramwise_cfg')
    assert cfg.optim_wrapper.get('clip_grad') == ref.optim_wrapper.get(
        'clip_grad')
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == lc.AMP_DTYPE[task]
    assert cfg.auto_scale_lr.base_batch_size == ref.get(
        'auto_scale_lr', dict(base_batch_size=16))['base_batch_size']

    # the augmentations, with the sizes scaled
    for loader in ('train_dataloader', 'val_dataloader'):
        assert types(cfg[loader].dataset.pipeline) == types(
            ref[loader].dataset.pipeline)
        assert cfg[loader].dataset.data_root.rstrip('/') == data_root
    assert cfg.train_dataloader.batch_size == budget['batch']
    if task == 'cls':
        assert cfg.model.train_cfg == ref.model.train_cfg  # Mixup, CutMix
        assert cfg.model.head.num_classes == budget['data']['num_classes']
        assert cfg.model.head.loss == ref.model.head.loss
        crop = lc.transforms(cfg.train_dataloader.dataset.pipeline,
                             'RandomResizedCrop')[0]
        assert crop.scale == budget['img']

    # the model: only the initialisation (from scratch) and sizes change
    backbone_cfg, ref_backbone = copy.deepcopy(
        cfg.model.backbone), copy.deepcopy(ref.model.backbone)
    for key in ('init_cfg', 'img_size', 'norm_eval', 'pad_small_map'):
        backbone_cfg.pop(key, None)
        ref_backbone.pop(key, None)
    assert backbone_cfg == ref_backbone
    if task != 'cls':  # the dense configs start from ImageNet weights
        assert ref.model.backbone.init_cfg.type == 'Pretrained'
        assert cfg.model.backbone.init_cfg is None
    if backbone == lc.BN_VARIANT:
        assert cfg.model.backbone.norm_eval is False
    elif 'norm_eval' in ref.model.backbone:
        assert cfg.model.backbone.norm_eval == ref.model.backbone.norm_eval
    assert cfg.model.get('neck') == ref.model.get('neck')

    # the schedule's shape: the same schedulers, each starting and ending at
    # the same fraction of the run
    full = lc.full_schedule_iters(ref, task)
    epoch = full / ref.train_cfg.get('max_epochs', 1)
    assert [s.type for s in cfg.param_scheduler] == [
        s.type for s in ref.param_scheduler]
    for got, want in zip(cfg.param_scheduler, ref.param_scheduler):
        unit = epoch if want.get('by_epoch', True) else 1
        assert got.by_epoch is False
        assert got.begin == round(want.get('begin', 0) * unit / full * 300)
        end = min(want.get('end', math.inf) * unit, full)
        assert abs(got.end - end / full * 300) <= 1
        for key in ('start_factor', 'eta_min', 'power', 'gamma'):
            assert got.get(key) == want.get(key)
    assert cfg.train_cfg == dict(
        type='IterBasedTrainLoop', max_iters=300, val_interval=75)
    # EMA: the same horizon as a fraction of the schedule
    ema = [h for h in cfg.get('custom_hooks', []) if h.type == 'EMAHook']
    ref_ema = [h for h in ref.get('custom_hooks', []) if h.type == 'EMAHook']
    assert len(ema) == len(ref_ema)
    for got, want in zip(ema, ref_ema):
        assert got.momentum == pytest.approx(want.momentum * full / 300)


def test_classification_schedule_numbers(tmp_path):
    """The sMLPNet-T ImageNet schedule (timm's cosine over 300 epochs with
    20 warm-up epochs laid over its start, stepped after each epoch)
    squeezed into 600 iterations: 40 warm-up iterations, a delay of 2."""
    args = lc.parse_args(['--work-dir', str(tmp_path)])
    budget = dict(lc.BUDGETS['short']['cls'], iters=600)
    cfg = lc.derive_config('cls', 'smlpnet-t', str(tmp_path), budget['data'],
                           budget, args)
    (cosine, ) = cfg.param_scheduler
    assert cosine.type == 'TimmCosineLR' and not cosine.by_epoch
    assert (cosine.t_initial, cosine.warmup_t, cosine.delay) == (600, 40, 2)
    assert (cosine.begin, cosine.end) == (0, 600)
    # EMA momentum 4e-5 per iteration over 300 x 1252 iterations
    assert cfg.custom_hooks[0].momentum == pytest.approx(4e-5 * 375600 / 600)


# ------------------------------------------------------ end to end ----
# sMLPNet-T and Swin-T on the three tasks (ConvNeXt-T: CPU time; its config
# is checked above)
EXPECTED_RUNS = {(t, b) for t in ('cls', 'det', 'seg')
                 for b in ('smlpnet-t', 'swin-t')}


@pytest.fixture(scope='module')
def tiny_run(tmp_path_factory):
    """The tool on the three tasks: 2 iterations of 2-4 tiny images, then
    one evaluation on the generated validation sets."""
    out = tmp_path_factory.mktemp('learning_check')
    log = run_tool('analysis_tools/learning_check.py', '--budget', 'tiny',
                   '--device', 'cpu', '--workers', '0', '--jobs', '2',
                   '--evals', '1', '--backbones', 'smlpnet-t', 'swin-t',
                   '--out-dir', str(out))
    return out, log


def test_tool_writes_table_and_charts(tiny_run):
    out, log = tiny_run
    for task in ('cls', 'det', 'seg'):
        png = out / f'learning_{task}.png'
        with Image.open(png) as image:
            assert image.format == 'PNG' and image.size[0] >= 500
    with open(out / 'learning.csv') as f:
        rows = list(csv.DictReader(f))
    assert {(r['task'], r['backbone']) for r in rows} == EXPECTED_RUNS
    assert all(r['status'] == 'ok' for r in rows)
    table = (out / 'learning.md').read_text()
    for task in lc.TASK_NAMES.values():
        assert f'## {task}' in table
    assert '| backbone | status | final accuracy/top1 |' in table


def test_reported_metric_is_the_evaluators(tiny_run):
    """The table's metrics are the values mmengine logged from the
    evaluators (Accuracy, CocoMetric, IoUMetric) in each run's
    scalars.json."""
    out, _ = tiny_run
    with open(out / 'learning.csv') as f:
        rows = {(r['task'], r['backbone']): r for r in csv.DictReader(f)}
    for (task, backbone), row in rows.items():
        work_dir = out / 'work' / 'runs' / task / backbone
        logged = read_scalars(str(work_dir))
        for key in lc.METRICS[task]:
            values = [r[key] for r in logged if key in r]
            assert len(values) == 1  # --evals 1: at the end
            assert float(row[f'final {key}']) == values[-1]
        # 2 iterations, logged every iteration, from scratch
        assert [r['step'] for r in logged if 'loss' in r] == [1, 2]
    results = json.loads((out / 'learning.json').read_text())
    assert {(r['task'], r['backbone'])
            for r in results['runs']} == EXPECTED_RUNS


def test_merge_rebuilds_outputs(tiny_run, tmp_path):
    out, _ = tiny_run
    results = json.loads((out / 'learning.json').read_text())
    # two halves, as from two machines
    for name, task in (('a', 'cls'), ('b', 'seg')):
        part = dict(meta=dict(results['meta'],
                              tasks={task: results['meta']['tasks'][task]}),
                    runs=[r for r in results['runs'] if r['task'] == task])
        (tmp_path / f'{name}.json').write_text(json.dumps(part))
    merged = tmp_path / 'merged'
    assert lc.main(['--merge', str(tmp_path / 'a.json'),
                    str(tmp_path / 'b.json'), '--out-dir', str(merged)]) == 0
    assert sorted(osp.basename(p) for p in glob.glob(str(merged / '*'))) == [
        'learning.csv', 'learning.json', 'learning.md', 'learning_cls.png',
        'learning_seg.png'
    ]


# ------------------------------------------- harder generated data ----
def test_imagenet_hard_options(tmp_path):
    classes = make_imagenet(str(tmp_path), num_classes=20, train_per_class=1,
                            val_per_class=1, size=64, scale=(0.12, 0.45),
                            clutter=8, occlusion=0.35)
    assert classes == ALL_SHAPE_CLASSES[:20]
    assert classes[:10] == SHAPE_CLASSES
    lines = (tmp_path / 'meta' / 'val.txt').read_text().splitlines()
    assert [int(line.split()[1]) for line in lines] == list(range(20))
    for line in lines:
        with Image.open(tmp_path / 'val' / line.split()[0]) as image:
            assert image.size == (64, 64)
    # the options change the images; the defaults keep them
    plain = np.asarray(draw_shape('star', 64, np.random.default_rng(0)))
    again = np.asarray(draw_shape('star', 64, np.random.default_rng(0)))
    hard = np.asarray(draw_shape('star', 64, np.random.default_rng(0),
                                 clutter=8, occlusion=0.35))
    assert (plain == again).all() and (plain != hard).any()
    with pytest.raises(ValueError, match='num_classes'):
        make_imagenet(str(tmp_path / 'x'), num_classes=21)
    with pytest.raises(ValueError, match='scale'):
        draw_shape('star', 64, np.random.default_rng(0), scale=(0.2, 0.6))


def test_coco_overlap_masks_are_visible_parts(tmp_path):
    from pycocotools import mask as mask_utils
    anns = make_coco(str(tmp_path), num_train=1, num_val=12, size=(96, 64),
                     num_categories=14, max_objects=10, scale=(0.1, 0.3),
                     clutter=10, overlap=0.3)
    data = json.loads(open(anns['val']).read())
    cat_ids = {a['category_id'] for a in data['annotations']}
    assert len(cat_ids) > 4  # more than the 4 default categories
    per_image = {}
    for ann in data['annotations']:
        rle = ann['segmentation']
        assert isinstance(rle['counts'], str) and rle['size'] == [64, 96]
        mask = mask_utils.decode(rle).astype(bool)
        assert ann['area'] == mask.sum() > 0
        ys, xs = np.nonzero(mask)
        assert ann['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                               ys.max() - ys.min() + 1]
        per_image.setdefault(ann['image_id'], []).append(mask)
    # the visible parts of one image's objects never share a pixel
    for masks in per_image.values():
        assert (np.sum(masks, axis=0) <= 1).all()
    assert max(len(m) for m in per_image.values()) > 4
    with pytest.raises(ValueError, match='num_categories'):
        shape_kinds(15)


def test_ade20k_hard_options(tmp_path):
    classes = make_ade20k(str(tmp_path), num_train=1, num_val=1,
                          size=(64, 80), num_objects=(4, 10),
                          num_object_classes=30, scale=(0.04, 0.3),
                          colour_jitter=40)
    assert set(CLASS_IDS) < set(classes) and len(classes) == 35
    assert set(object_classes(30)) < set(classes)
    seen = set()
    rng = np.random.default_rng(0)
    for _ in range(10):
        _, label = draw_scene((64, 80), rng, (4, 10), 30, (0.04, 0.3), 40)
        seen |= set(np.unique(np.asarray(label)).tolist())
    assert seen <= {0, *classes} and len(seen - set(CLASS_IDS)) > 0
    with pytest.raises(ValueError, match='num_object_classes'):
        object_classes(31)

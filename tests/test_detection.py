# Copyright (c) mmsmlp contributors. All rights reserved.
"""Mask R-CNN with the sMLPNet backbone (mmdet): configs, generated COCO
data, training and COCO evaluation through tools/train.py and tools/test.py,
the demo, input sizes, the frozen-BatchNorm decision, ImageNet init, AMP."""
import copy
import glob
import json
import os.path as osp
import re
import sys
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, build_optim_wrapper
from mmengine.registry import init_default_scope
from PIL import Image
from torch.nn.modules.batchnorm import _BatchNorm

from mmsmlp.datasets.synthetic_coco import (COCO_CATEGORY_IDS,
                                            SHAPE_CATEGORIES, make_coco)
from mmsmlp.models import SMLPNet

from .conftest import REPO_ROOT, import_tool, read_scalars, run_tool

DET_DIR = osp.join(REPO_ROOT, 'configs', 'mask_rcnn')
T_1X = osp.join(DET_DIR, 'mask-rcnn_smlpnet-t_fpn_1x_coco.py')
IN1K_T = osp.join(REPO_ROOT, 'configs', 'smlpnet', 'smlpnet-t_8xb128_in1k.py')
DET_CONFIGS = {
    'mask-rcnn_smlpnet-t_fpn_1x_coco.py': ('tiny', 0.2, 12, [8, 11]),
    'mask-rcnn_smlpnet-s_fpn_1x_coco.py': ('small', 0.3, 12, [8, 11]),
    'mask-rcnn_smlpnet-t_fpn_ms-crop-3x_coco.py': ('tiny', 0.2, 36, [27, 33]),
    'mask-rcnn_smlpnet-s_fpn_ms-crop-3x_coco.py': ('small', 0.3, 36,
                                                   [27, 33]),
}
# Generated images (non-square), and the test resize to keep them as they are
IMG_W, IMG_H = 320, 256
# A small sMLPNet for the runs through the tools (CPU time).
TINY_ARCH = dict(embed_dims=16, depths=[1, 1, 1, 1], mlp_ratio=2)


@pytest.fixture(scope='module')
def t_cfg():
    cfg = Config.fromfile(T_1X)
    cfg.model.backbone.init_cfg = None
    return cfg


def fewer_rois(cfg):
    """Fewer RoIs than the config's (CPU time: with 512 sampled RoIs the mask
    head costs more than the backbone); the backbone is the subject."""
    cfg = copy.deepcopy(cfg)
    cfg.model.test_cfg.rpn.max_per_img = 20
    cfg.model.train_cfg.rpn_proposal.max_per_img = 200
    cfg.model.train_cfg.rcnn.sampler.num = 32
    return cfg


def stage_channels(arch):
    embed_dims = SMLPNet.parse_arch(arch)['embed_dims']
    return [embed_dims * 2**i for i in range(4)]


def build_detector(cfg, **backbone):
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(backbone)
    return MODELS.build(model_cfg)


def build_classifier(arch):
    """The ImageNet model of configs/smlpnet with the given arch."""
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(IN1K_T).model
    cfg.backbone.arch = arch
    cfg.head.in_channels = stage_channels(arch)[-1]
    return MODELS.build(cfg)


def save_classification_checkpoint(model, path):
    # Non-default BatchNorm statistics, so that loading them shows.
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen))
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + .5)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


# ---------------------------------------------------------------- data ----
@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthetic_coco'))
    make_coco(root, num_train=6, num_val=3, size=(IMG_W, IMG_H), seed=0)
    return root + '/'


def test_make_coco_format(coco_root, tmp_path):
    from mmdet.datasets import CocoDataset
    classes = CocoDataset.METAINFO['classes']
    for split, num in (('train', 6), ('val', 3)):
        with open(f'{coco_root}annotations/instances_{split}2017.json') as f:
            ann = json.load(f)
        assert {'info', 'licenses', 'images', 'annotations',
                'categories'} <= set(ann)
        cats = ann['categories']
        assert [c['name'] for c in cats] == list(classes)
        assert [c['id'] for c in cats] == list(COCO_CATEGORY_IDS)
        assert {c['name']: c['supercategory'] for c in cats}['tv'] == \
            'electronic'
        assert len(ann['images']) == num
        for img in ann['images']:
            assert (img['width'], img['height']) == (IMG_W, IMG_H)
            assert osp.isfile(f'{coco_root}{split}2017/{img["file_name"]}')
            assert len(img['file_name']) == len('000000000001.jpg')
        used = {c['id'] for c in cats if c['name'] in
                SHAPE_CATEGORIES.values()}
        for a in ann['annotations']:
            x, y, w, h = a['bbox']
            assert 0 <= x and 0 <= y and x + w <= IMG_W and y + h <= IMG_H
            poly = np.array(a['segmentation'][0]).reshape(-1, 2)
            assert len(poly) >= 3 and a['iscrowd'] == 0
            np.testing.assert_allclose(
                [poly[:, 0].min(), poly[:, 1].min(), poly[:, 0].max(),
                 poly[:, 1].max()], [x, y, x + w, y + h], atol=0.02)
            assert 0 < a['area'] <= w * h + 0.1
            assert a['category_id'] in used
    # ids unique over both splits
    ids = []
    for split in ('train', 'val'):
        with open(f'{coco_root}annotations/instances_{split}2017.json') as f:
            ids += [img['id'] for img in json.load(f)['images']]
    assert sorted(ids) == list(range(1, 10))

    # mmdet's CocoDataset with its default COCO metainfo reads it; the mask
    # is the drawn shape (its colour differs from the background).
    init_default_scope('mmdet')
    dataset = CocoDataset(
        data_root=coco_root, ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True, with_mask=True)
        ])
    assert len(dataset) == 3
    sample = dataset[0]
    masks = sample['gt_masks'].to_ndarray().astype(bool)
    assert len(masks) == len(sample['gt_bboxes']) >= 1
    assert set(classes[i] for i in sample['gt_bboxes_labels']) <= set(
        SHAPE_CATEGORIES.values())
    img = sample['img'].astype(float)
    background = img[~masks.any(0)].mean(0)
    for mask in masks:
        assert np.abs(img[mask].mean(0) - background).max() > 30

    # deterministic; clear errors
    again = make_coco(str(tmp_path / 'again'), 6, 3, (IMG_W, IMG_H), seed=0)
    with open(again['val']) as f, \
            open(f'{coco_root}annotations/instances_val2017.json') as g:
        assert json.load(f) == json.load(g)
    with pytest.raises(ValueError, match='at least 32 pixels'):
        make_coco(str(tmp_path / 'bad'), 1, 1, (16, 64))
    with pytest.raises(ValueError, match='at least 32 pixels'):
        make_coco(str(tmp_path / 'bad'), 1, 1, [(64, 48), (16, 64)])


def test_make_coco_size_mix(tmp_path):
    """A list of sizes: each image's drawn from it, written at that size
    (det_speed.py --size coco)."""
    sizes = [(64, 48), (48, 64), (80, 40)]
    files = make_coco(str(tmp_path), 24, 2, sizes, seed=0)
    with open(files['train']) as f:
        ann = json.load(f)
    drawn = [(img['width'], img['height']) for img in ann['images']]
    assert set(drawn) == set(sizes)
    for img in ann['images']:
        with Image.open(tmp_path / 'train2017' / img['file_name']) as im:
            assert im.size == (img['width'], img['height'])
    for a in ann['annotations']:
        img = ann['images'][a['image_id'] - 1]
        x, y, w, h = a['bbox']
        assert x + w <= img['width'] and y + h <= img['height']


# ------------------------------------------------------------- configs ----
def test_detection_configs():
    found = sorted(osp.basename(p) for p in glob.glob(f'{DET_DIR}/*.py'))
    assert found == sorted(DET_CONFIGS)
    for name, (arch, dpr, epochs, steps) in DET_CONFIGS.items():
        cfg = Config.fromfile(osp.join(DET_DIR, name))
        assert cfg.default_scope == 'mmdet'
        assert cfg.custom_imports.imports == ['mmsmlp']
        assert cfg.model.type == 'MaskRCNN'
        bb = cfg.model.backbone
        assert (bb.type, bb.arch, bb.drop_path_rate) == ('SMLPNet', arch, dpr)
        assert tuple(bb.out_indices) == (0, 1, 2, 3)
        assert bb.norm_eval is True and bb.norm_cfg.type == 'BN'
        # nothing of Swin's backbone config is left
        assert 'window_size' not in bb and 'convert_weights' not in bb
        assert bb.init_cfg == dict(
            type='Pretrained', checkpoint=cfg.pretrained, prefix='backbone.')
        # T: this project's ImageNet training; S: the official weights,
        # converted (the model-index names)
        assert cfg.pretrained == ('checkpoints/smlpnet-t_8xb128_in1k.pth'
                                  if arch[0] == 't' else
                                  'checkpoints/smlpnet-s_3rdparty_in1k.pth')
        assert cfg.model.neck.in_channels == stage_channels(arch)
        optim = cfg.optim_wrapper
        assert optim.optimizer == dict(
            type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05)
        # no bias_decay_mult: it would take the decay off the heads' biases
        assert set(optim.paramwise_cfg) == {'custom_keys'}
        assert optim.paramwise_cfg.custom_keys['norm'] == dict(decay_mult=0.)
        warmup, steps_cfg = cfg.param_scheduler
        assert (warmup.type, warmup.by_epoch, warmup.end) == ('LinearLR',
                                                              False, 1000)
        assert steps_cfg.type == 'MultiStepLR'
        assert steps_cfg.milestones == steps
        assert cfg.train_cfg.max_epochs == epochs
        assert cfg.train_dataloader.batch_size == 2
        assert cfg.auto_scale_lr.base_batch_size == 16
        transforms = [t.type for t in cfg.train_dataloader.dataset.pipeline]
        if epochs == 36:  # multi-scale + crop augmentation of mmdet's base
            assert 'RandomChoice' in transforms
            crop = cfg.train_dataloader.dataset.pipeline[3].transforms[1][1]
            assert crop.type == 'RandomCrop'
        else:
            assert transforms[2] == 'Resize'
        assert cfg.val_evaluator.metric == ['bbox', 'segm']


def test_optimizer_param_groups(t_cfg):
    """The config's AdamW: no weight decay on the backbone's norms and
    biases (its ImageNet rule); the neck and heads decay all but norms (they
    have none), biases included, as mmdet's Swin-T config."""
    model = build_detector(t_cfg)
    wrapper = build_optim_wrapper(model, copy.deepcopy(t_cfg.optim_wrapper))
    decay = {}
    for group in wrapper.optimizer.param_groups:
        assert group['lr'] == 1e-4 and group['betas'] == (0.9, 0.999)
        for p in group['params']:
            decay[id(p)] = group['weight_decay']
    names = dict(model.named_parameters())
    assert set(decay) == {id(p) for p in names.values()}
    for name, p in names.items():
        in_backbone = name.startswith('backbone.')
        no_decay = 'norm' in name or (in_backbone and p.ndim == 1)
        assert decay[id(p)] == (0. if no_decay else 0.05), name
    # the sparse MLP's mixing weights and biases, convs and heads' biases
    assert decay[id(names['backbone.stages.0.0.smlp.mix_h.weight'])] == 0.05
    assert decay[id(names['backbone.stages.0.0.smlp.mix_h.bias'])] == 0.
    assert decay[id(names['backbone.stages.3.0.ffn.fc2.bias'])] == 0.
    assert decay[id(names['backbone.stages.1.0.norm1.weight'])] == 0.
    assert decay[id(names['neck.fpn_convs.0.conv.bias'])] == 0.05
    assert decay[id(names['roi_head.bbox_head.fc_cls.bias'])] == 0.05
    heads_biases = [n for n in names
                    if not n.startswith('backbone.') and n.endswith('.bias')]
    assert len(heads_biases) > 10


# ----------------------------------------------------- train and test ----
def tool_options(coco_root, tiny_ckpt=None):
    """cfg-options for the T 1x config: generated data at its own size, a
    tiny sMLPNet (CPU time), one epoch, no worker processes, and every
    detection kept at test time (an untrained model scores low)."""
    cfg = Config.fromfile(T_1X)
    assert cfg.train_dataloader.dataset.pipeline[2].type == 'Resize'
    assert cfg.test_dataloader.dataset.pipeline[1].type == 'Resize'
    scale = f'({IMG_W},{IMG_H})'
    ann = f'{coco_root}annotations/instances_val2017.json'
    opts = [
        f'train_dataloader.dataset.data_root={coco_root}',
        f'val_dataloader.dataset.data_root={coco_root}',
        f'test_dataloader.dataset.data_root={coco_root}',
        f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}',
        f'train_dataloader.dataset.pipeline.2.scale={scale}',
        f'val_dataloader.dataset.pipeline.1.scale={scale}',
        f'test_dataloader.dataset.pipeline.1.scale={scale}',
        'train_cfg.max_epochs=1', 'default_hooks.logger.interval=1',
        'model.backbone.arch._delete_=True',
        f'model.backbone.arch.embed_dims={TINY_ARCH["embed_dims"]}',
        'model.backbone.arch.depths=[1,1,1,1]',
        f'model.backbone.arch.mlp_ratio={TINY_ARCH["mlp_ratio"]}',
        'model.neck.in_channels=[16,32,64,128]',
        'model.train_cfg.rcnn.sampler.num=32',
        'model.test_cfg.rpn.max_per_img=200',
        'model.test_cfg.rcnn.score_thr=0.0',
        'model.test_cfg.rcnn.max_per_img=20',
    ]
    for loader in ('train', 'val', 'test'):
        opts += [f'{loader}_dataloader.num_workers=0',
                 f'{loader}_dataloader.persistent_workers=False']
    if tiny_ckpt is not None:
        opts.append(f'model.backbone.init_cfg.checkpoint={tiny_ckpt}')
    return ['--cfg-options', *opts]


@pytest.fixture(scope='module')
def trained(coco_root, tmp_path_factory):
    """3 iterations of Mask R-CNN (tiny sMLPNet) through tools/train.py,
    initialised from an ImageNet classification checkpoint, evaluated with
    CocoMetric after the epoch."""
    tmp = tmp_path_factory.mktemp('det_train')
    ckpt = save_classification_checkpoint(
        build_classifier(TINY_ARCH), str(tmp / 'tiny_in1k.pth'))
    work_dir = str(tmp / 'work')
    log = run_tool('train.py', T_1X, '--work-dir', work_dir,
                   *tool_options(coco_root, ckpt))
    return work_dir, log, ckpt


def test_train_tool(trained):
    work_dir, log, ckpt = trained
    assert f'load backbone. in model from: {ckpt}' in log
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
    logs = read_scalars(work_dir)
    train = [s for s in logs if 'loss_mask' in s]
    assert [s['iter'] for s in train] == [1, 2, 3]  # 6 images, 2 per batch
    assert all(np.isfinite(s['loss']) for s in train)
    val = [s for s in logs if 'coco/bbox_mAP' in s]
    assert len(val) == 1 and 'coco/segm_mAP' in val[0]

    # tools/analysis_tools/det_speed.py reads this log format
    det_speed = import_tool('analysis_tools/det_speed.py')
    summary = det_speed.summarize(logs, interval=1)
    assert summary['timed_iters'] == [2, 3]
    assert summary['sec_per_iter'] == pytest.approx(
        (train[1]['time'] + train[2]['time']) / 2)
    assert summary['last_loss'] == train[2]['loss']


def test_test_tool_coco_metric(trained, coco_root, tmp_path):
    work_dir, _, _ = trained
    test_dir = str(tmp_path / 'test')
    log = run_tool('test.py', T_1X, osp.join(work_dir, 'epoch_1.pth'),
                   '--work-dir', test_dir, '--show-dir', 'vis',
                   *tool_options(coco_root))
    for key in ('coco/bbox_mAP', 'coco/segm_mAP', 'coco/bbox_mAP_50',
                'coco/segm_mAP_50'):
        assert key in log
    assert 'Evaluating bbox' in log and 'Evaluating segm' in log
    # --show-dir: mmdet's DetVisualizationHook drew every val image, into
    # <work_dir>/<show_dir>
    pictures = glob.glob(osp.join(test_dir, 'vis', '*.jpg'))
    val_images = glob.glob(osp.join(coco_root, 'val2017', '*.jpg'))
    assert len(val_images) == 3
    assert sorted(map(osp.basename, pictures)) == sorted(
        map(osp.basename, val_images))


def test_det_demo(trained, coco_root, tmp_path):
    work_dir, _, _ = trained
    image = sorted(glob.glob(f'{coco_root}val2017/*.jpg'))[0]
    out = str(tmp_path / 'out' / 'demo.jpg')
    opts = tool_options(coco_root)
    log = run_tool('demo/det_demo.py', image, T_1X,
                   osp.join(work_dir, 'epoch_1.pth'), '--out-file', out,
                   '--device', 'cpu', '--score-thr', '0', *opts)
    found = re.search(r'(\d+) detections with score >= 0.0', log)
    assert found and int(found.group(1)) > 0, log[-2000:]
    drawn = np.asarray(Image.open(out)).astype(float)
    original = np.asarray(Image.open(image)).astype(float)
    assert drawn.shape == original.shape
    # boxes and masks are drawn on the image
    assert np.abs(drawn - original).mean() > 1


# ----------------------------------------------------------- the model ----
def test_non_square_inputs(t_cfg):
    """sMLPNet-T Mask R-CNN at sizes that are neither square nor 224 (the
    sparse-MLP weights are resampled), in tensor mode, and in loss mode at
    the size that is not a multiple of 32."""
    from mmdet.testing import demo_mm_inputs
    cfg = fewer_rois(t_cfg)
    # no stochastic depth: with one image, a dropped token branch leaves
    # its sMLP without a gradient (the check at the end)
    cfg.model.backbone.drop_path_rate = 0.
    model = build_detector(cfg)
    sizes = [(320, 480), (480, 320), (333, 517)]
    model.eval()
    with torch.no_grad():
        # backbone + FPN at a size that is not a multiple of 32
        feats = model.extract_feat(torch.randn(1, 3, 333, 517))
        assert [f.shape[-2:] for f in feats] == [
            (-(-333 // s), -(-517 // s)) for s in (4, 8, 16, 32, 64)
        ]
        assert all(f.shape[1] == 256 for f in feats)
        for h, w in sizes:
            data = model.data_preprocessor(
                demo_mm_inputs(1, [(3, h, w)], num_classes=80), False)
            assert data['inputs'].shape[-2:] == (-(-h // 32) * 32,
                                                 -(-w // 32) * 32)
            (cls_score, bbox_pred, mask_pred), = model(
                **data, mode='tensor')
            assert cls_score.shape == (20, 81)
            assert bbox_pred.shape == (20, 320)
            assert mask_pred.shape == (20, 80, 28, 28)
            assert torch.isfinite(cls_score).all()
    # training at the odd size (CPU time: one size only)
    model.train()
    packed = demo_mm_inputs(
        1, [(3, 333, 517)], num_items=[3], num_classes=80, with_mask=True)
    data = model.data_preprocessor(packed, True)
    assert data['inputs'].shape[-2:] == (352, 544)
    losses = model(**data, mode='loss')
    assert {'loss_rpn_cls', 'loss_cls', 'loss_bbox', 'loss_mask'} <= set(
        losses)
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    for stage in model.backbone.stages:  # resampled weights get gradients
        grad = stage[0].smlp.mix_h.weight.grad
        assert grad is not None and grad.abs().sum() > 0


def test_backbone_batchnorm_frozen(t_cfg):
    """The BatchNorm decision: in training, every BatchNorm of the backbone
    keeps its (ImageNet) statistics, its affine terms train."""
    from mmdet.testing import demo_mm_inputs
    # drop path off: every block then gets a gradient in one step
    model = build_detector(fewer_rois(t_cfg), drop_path_rate=0.)
    backbone = model.backbone
    bns = [(n, m) for n, m in backbone.named_modules()
           if isinstance(m, _BatchNorm)]
    # 2 per block (26 blocks in T) + the 4 output norms
    assert len(bns) == 2 * sum(backbone.depths) + 4 == 56
    stats = {
        n: [m.running_mean.clone(), m.running_var.clone(),
            m.num_batches_tracked.clone()]
        for n, m in bns
    }
    affine = {n: [m.weight.clone(), m.bias.clone()] for n, m in bns}
    wrapper = build_optim_wrapper(model, copy.deepcopy(t_cfg.optim_wrapper))
    model.train()  # as the Runner does before training
    assert model.training and backbone.training
    assert all(not m.training for _, m in bns)
    assert all(m.weight.requires_grad and m.bias.requires_grad
               for _, m in bns)
    # the other layers of the backbone are in training mode
    assert backbone.stages[2][0].ffn.training

    packed = demo_mm_inputs(
        2, [(3, 96, 160)] * 2, num_items=[2, 2], num_classes=80,
        with_mask=True)
    # the gradients reach every BatchNorm's affine terms ...
    losses = model(**model.data_preprocessor(packed, True), mode='loss')
    model.parse_losses(losses)[0].backward()
    for n, m in bns:
        assert m.weight.grad is not None and m.weight.grad.abs().sum() > 0, n
        assert m.bias.grad is not None and m.bias.grad.abs().sum() > 0, n
    wrapper.zero_grad()
    # ... and the Runner's training step updates them, not the statistics
    model.train_step(packed, wrapper)
    model.train()
    assert all(not m.training for _, m in bns)
    for n, m in bns:
        now = [m.running_mean, m.running_var, m.num_batches_tracked]
        for before, after in zip(stats[n], now):
            assert torch.equal(before, after), n
        assert not torch.equal(affine[n][0], m.weight), n
        assert not torch.equal(affine[n][1], m.bias), n

    # without norm_eval the same step would move the statistics
    backbone.norm_eval = False
    model.train()
    norm = backbone.stages[0][0].norm1
    before = norm.running_mean.clone()
    model(**model.data_preprocessor(packed, True), mode='loss')
    assert not torch.equal(before, norm.running_mean)


def test_pretrained_init_loads_imagenet_backbone(t_cfg, tmp_path):
    """init_cfg=Pretrained(prefix='backbone.') loads the backbone of a
    checkpoint of configs/smlpnet (an ImageClassifier)."""
    ckpt = save_classification_checkpoint(
        build_classifier('tiny'), str(tmp_path / 'smlpnet-t_in1k.pth'))
    classifier = torch.load(ckpt, weights_only=True)['state_dict']
    cfg = copy.deepcopy(t_cfg)
    cfg.model.backbone.init_cfg = Config.fromfile(T_1X).model.backbone.init_cfg
    cfg.model.backbone.init_cfg.checkpoint = ckpt
    model = build_detector(cfg)
    keys = ['stages.2.5.smlp.mix_h.weight', 'stages.1.0.norm1.running_mean',
            'norm3.running_var', 'downsample_layers.0.weight',
            'stages.3.1.smlp.fuse.weight']
    state = model.backbone.state_dict()
    assert not any(torch.equal(state[k], classifier[f'backbone.{k}'])
                   for k in keys)
    model.init_weights()
    state = model.backbone.state_dict()
    for key in classifier:
        if key.startswith('backbone.'):
            assert torch.equal(state[key[len('backbone.'):]],
                               classifier[key]), key
    # the output norms of stages 0-2 are not in an ImageNet model
    assert 'backbone.norm0.weight' not in classifier
    assert torch.equal(state['norm0.running_var'], torch.ones(80))


# ------------------------------------------------------------------ AMP ----
def test_train_amp_is_fp16(monkeypatch):
    """`tools/train.py --amp` gives mmengine's AmpOptimWrapper with fp16
    autocast on CUDA (mmcv's RoIAlign has no bf16 kernel)."""
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_wrapper
    import mmengine.runner.amp as amp
    train_tool = import_tool('train.py')
    monkeypatch.setattr(sys, 'argv', ['train.py', T_1X, '--amp'])
    cfg = train_tool.merge_args(Config.fromfile(T_1X),
                                train_tool.parse_args())
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'

    # What the wrapper does on a GPU (there is none here): record the
    # autocast it opens around the forward pass.
    opened = []

    @contextmanager
    def record_autocast(device_type, enabled=True, dtype=None,
                        cache_enabled=None):
        opened.append((device_type, dtype))
        yield

    monkeypatch.setattr(amp_wrapper, 'is_cuda_available', lambda: True)
    monkeypatch.setattr(amp, 'get_device', lambda: 'cuda')
    monkeypatch.setattr(amp.torch, 'autocast', record_autocast)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1),
                                torch.nn.BatchNorm2d(4))
    init_default_scope('mmdet')
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert isinstance(wrapper, AmpOptimWrapper)
    with wrapper.optim_context(model):
        pass
    assert opened == [('cuda', torch.float16)]

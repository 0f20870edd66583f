# Copyright (c) mmsmlp contributors. All rights reserved.
"""UperNet + sMLPNet on ADE20K (mmseg): the configs' recipe, the frozen
BatchNorm statistics of the backbone, the ImageNet initialisation, slide and
whole-image inference, and training, evaluation (slide, whole, TTA) and the
demo through the tools on generated ADE20K-format data."""
import glob
import json
import os.path as osp
import re
import subprocess
import sys

import mmsmlp  # noqa: F401,I001  isort:skip
import mmseg
import numpy as np
import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.structures import PixelData
from mmseg.datasets import ADE20KDataset
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from PIL import Image
from torch.nn.modules.batchnorm import _BatchNorm

from mmsmlp.datasets.synthetic_ade20k import (CLASS_IDS, IGNORE_ID,
                                              make_ade20k)
from mmsmlp.models import SMLPNet
from mmsmlp.models.utils.sparse_mlp import resample_axial_mixing

from .conftest import REPO_ROOT

ARCHS = {'t': 'tiny', 's': 'small', 'b': 'base'}
CHANNELS = {
    't': [80, 160, 320, 640],
    's': [96, 192, 384, 768],
    'b': [112, 224, 448, 896]
}
DROP_PATH = {'t': 0.3, 's': 0.3, 'b': 0.3}  # Swin-T/S/B's UperNet's
SWIN_T = 'swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'  # noqa
NUM_TRAIN, NUM_VAL, IMAGE_SIZE = 4, 1, (96, 128)
CROP = 64  # the crop of the tool runs (the configs' is 512)


def config_path(arch: str) -> str:
    return osp.join(REPO_ROOT, 'configs', 'upernet',
                    f'smlpnet-{arch}_upernet_8xb2-160k_ade20k-512x512.py')


def build_segmentor(cfg: Config):
    """The config's segmentor, randomly initialised, SyncBN -> BN (one
    process, as mmengine's Runner does when not distributed)."""
    init_default_scope('mmseg')
    cfg.model.backbone.init_cfg = None
    return revert_sync_batchnorm(MODELS.build(cfg.model))


def without_scope(cfg) -> dict:
    return {k: v for k, v in cfg.items() if k != '_scope_'}


def seg_batch(num: int, size: int, seed: int = 0) -> dict:
    """A data batch as the dataloader gives it (uint8 images, labels with
    ignored pixels)."""
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(num):
        inputs.append(
            torch.randint(0, 256, (3, size, size), generator=g,
                          dtype=torch.uint8))
        label = torch.randint(0, 150, (1, size, size), generator=g)
        label[:, :size // 4] = 255
        sample = SegDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


# --- configs -----------------------------------------------------------------


@pytest.mark.parametrize('arch', list(ARCHS))
def test_upernet_recipe(arch):
    cfg = Config.fromfile(config_path(arch))
    assert cfg.default_scope == 'mmseg'
    assert cfg.custom_imports.imports == ['mmsmlp']

    backbone = cfg.model.backbone
    assert backbone.type == 'SMLPNet' and backbone.arch == ARCHS[arch]
    embed_dims = SMLPNet.arch_zoo[backbone.arch]['embed_dims']
    assert [embed_dims * 2**i for i in range(4)] == CHANNELS[arch]
    assert backbone.out_indices == (0, 1, 2, 3)
    assert backbone.drop_path_rate == DROP_PATH[arch]
    assert tuple(backbone.img_size) == (512, 512)
    # the BatchNorm decision: frozen ImageNet statistics in the backbone,
    # SyncBN in the heads
    assert backbone.norm_eval is True and backbone.norm_cfg.type == 'BN'
    assert without_scope(backbone.init_cfg) == dict(
        type='Pretrained',
        checkpoint=f'checkpoints/smlpnet-{arch}_8xb128_in1k.pth'
        if arch == 't' else f'checkpoints/smlpnet-{arch}_3rdparty_in1k.pth',
        prefix='backbone.')

    decode, aux = cfg.model.decode_head, cfg.model.auxiliary_head
    assert decode.type == 'UPerHead' and aux.type == 'FCNHead'
    assert decode.in_channels == CHANNELS[arch]
    assert decode.in_index == [0, 1, 2, 3]
    assert aux.in_channels == CHANNELS[arch][2] and aux.in_index == 2
    assert decode.num_classes == aux.num_classes == 150
    assert aux.loss_decode.loss_weight == 0.4
    assert decode.norm_cfg.type == aux.norm_cfg.type == 'SyncBN'

    # whole-image inference, as mmseg's Swin-T results; the window settings
    # are there for `model.test_cfg.mode=slide`
    assert without_scope(cfg.model.test_cfg) == dict(
        mode='whole', crop_size=(512, 512), stride=(341, 341))
    assert cfg.model.data_preprocessor.size == (512, 512)
    train = cfg.train_dataloader
    assert train.batch_size == 2 and train.dataset.type == 'ADE20KDataset'
    steps = {t.type: t for t in train.dataset.pipeline}
    assert steps['RandomCrop'].crop_size == (512, 512)
    assert steps['CheckedLoadAnnotations'].reduce_zero_label is True
    assert steps['CheckedLoadAnnotations'].num_classes == 150
    assert cfg.train_cfg.max_iters == 160000
    assert cfg.tta_model.type == 'SegTTAModel'
    tta = cfg.tta_pipeline[-1]
    assert tta.type == 'TestTimeAug'
    assert [t.scale_factor for t in tta.transforms[0]] == [
        0.5, 0.75, 1.0, 1.25, 1.5, 1.75
    ]
    assert [t.prob for t in tta.transforms[1]] == [0., 1.]

    # Swin-T UperNet's optimiser and schedule
    optim = cfg.optim_wrapper
    assert without_scope(optim.optimizer) == dict(
        type='AdamW', lr=6e-5, betas=(0.9, 0.999), weight_decay=0.01)
    assert set(optim.paramwise_cfg) == {'custom_keys'}
    assert optim.paramwise_cfg.custom_keys['norm'] == {'decay_mult': 0.}
    warmup, poly = cfg.param_scheduler
    assert without_scope(warmup) == dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1500)
    assert without_scope(poly) == dict(
        type='PolyLR', eta_min=0., power=1.0, begin=1500, end=160000,
        by_epoch=False)
    swin = Config.fromfile(
        osp.join(
            osp.dirname(mmseg.__file__), '.mim', 'configs',
            SWIN_T))
    assert without_scope(optim.optimizer) == swin.optim_wrapper.optimizer
    assert [without_scope(s) for s in cfg.param_scheduler
            ] == swin.param_scheduler
    assert cfg.train_dataloader.batch_size == swin.train_dataloader.batch_size


def test_no_weight_decay_on_backbone_norms_and_biases():
    cfg = Config.fromfile(config_path('t'))
    model = build_segmentor(cfg)
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    params = dict(model.named_parameters())
    decay = {
        names[id(p)]: group['weight_decay']
        for group in optim_wrapper.optimizer.param_groups
        for p in group['params']
    }
    assert len(decay) == len(names)
    norms = [n for n in decay if n.startswith('backbone.') and 'norm' in n]
    # BN (norm1, norm2, output norm0-3) and LayerNorm (norm3) of 26 blocks
    assert len(norms) == 2 * (3 * 26 + 4)
    # the backbone's other 1-D parameters: the biases of its convs and MLPs
    biases = [
        n for n in decay if n.startswith('backbone.') and n not in norms
        and params[n].ndim == 1
    ]
    assert all(n.endswith('.bias') for n in biases)
    # mix_h, mix_w, fc1, fc2 of 26 blocks
    assert len(biases) == 4 * 26
    assert all(decay[n] == 0 for n in norms + biases)
    # everything else decays, the heads' BN and biases too (as Swin-T's)
    others = [n for n in decay if n not in norms + biases]
    assert len(others) > len(norms)
    assert all(decay[n] == 0.01 for n in others)
    assert 'backbone.stages.2.5.smlp.mix_h.weight' in others
    assert 'decode_head.fpn_bottleneck.bn.weight' in others
    assert 'decode_head.conv_seg.bias' in others


# --- the BatchNorm decision --------------------------------------------------


def test_backbone_keeps_frozen_batchnorm_statistics():
    cfg = Config.fromfile(config_path('t'))
    cfg.model.backbone.drop_path_rate = 0.  # every block gets gradients
    cfg.model.data_preprocessor.size = (64, 64)  # pads to this in training
    model = build_segmentor(cfg)
    model.train()
    backbone_bns = [(n, m) for n, m in model.backbone.named_modules()
                    if isinstance(m, _BatchNorm)]
    assert len(backbone_bns) == 2 * 26 + 4  # 2 per block, 4 output norms
    assert all(not m.training for _, m in backbone_bns)
    head_bns = [
        m for m in model.decode_head.modules() if isinstance(m, _BatchNorm)
    ]
    assert head_bns and all(m.training for m in head_bns)

    torch.manual_seed(0)
    with torch.no_grad():  # ImageNet-like statistics, not 0 and 1
        for _, m in backbone_bns:
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.)
    before = {
        n: [t.clone() for t in (m.running_mean, m.running_var,
                                m.num_batches_tracked, m.weight, m.bias)]
        for n, m in backbone_bns
    }
    head_mean = head_bns[0].running_mean.clone()

    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    data = model.data_preprocessor(seg_batch(2, 64), True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    optim_wrapper.step()

    for name, m in backbone_bns:
        mean, var, count, weight, bias = before[name]
        assert torch.equal(m.running_mean, mean), name
        assert torch.equal(m.running_var, var), name
        assert torch.equal(m.num_batches_tracked, count), name
        # the affine parameters are still trained
        assert m.weight.grad.abs().sum() > 0, name
        assert m.bias.grad.abs().sum() > 0, name
        assert not torch.equal(m.weight, weight), name
        assert not torch.equal(m.bias, bias), name
    # the heads' (Sync)BN normalises with batch statistics
    assert not torch.equal(head_bns[0].running_mean, head_mean)


# --- ImageNet initialisation -------------------------------------------------


def test_pretrained_init_loads_classification_checkpoint(tmp_path):
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    init_default_scope('mmpretrain')
    classifier = MMPRETRAIN_MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='SMLPNet', arch='tiny'),  # at 224x224
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=10,
                      in_channels=640)))
    state_dict = classifier.state_dict()
    torch.manual_seed(0)
    for value in state_dict.values():  # "trained" weights and statistics
        if value.is_floating_point():
            value.copy_(torch.rand_like(value) + 0.5)
    path = str(tmp_path / 'smlpnet-t_in1k.pth')
    torch.save({'state_dict': state_dict, 'meta': {}}, path)

    cfg = Config.fromfile(config_path('t'))
    cfg.model.backbone.init_cfg.checkpoint = path
    init_default_scope('mmseg')
    segmentor = MODELS.build(cfg.model)
    segmentor.init_weights()

    loaded = segmentor.backbone.state_dict()
    expected = {
        k[len('backbone.'):]: v
        for k, v in state_dict.items() if k.startswith('backbone.')
    }
    for key, value in expected.items():
        if '.smlp.mix_' in key:
            # 224 / 4 = 56 positions at stage 0 resampled to 512 / 4 = 128
            stage = int(key.split('.')[1])
            size = 128 // 2**stage
            name = key.rsplit('.', 1)[0]
            weight, bias = resample_axial_mixing(
                expected[name + '.weight'], expected[name + '.bias'], size)
            value = weight if key.endswith('weight') else bias
            assert loaded[key].shape[0] == size
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    # only the new output norms of stages 0-2 are not in the checkpoint
    missing = sorted(set(loaded) - set(expected))
    assert missing == sorted(
        f'norm{i}.{p}' for i in range(3) for p in (
            'weight', 'bias', 'running_mean', 'running_var',
            'num_batches_tracked'))


# --- slide and whole inference -----------------------------------------------


@pytest.fixture(scope='module')
def segmentor_t():
    cfg = Config.fromfile(config_path('t'))
    # narrower heads: the windows do not depend on their width, the CPU time
    # does (512 channels at stride 4)
    cfg.model.decode_head.channels = 64
    cfg.model.auxiliary_head.channels = 32
    torch.manual_seed(0)
    return build_segmentor(cfg).eval()


def predict_recording_windows(model, inputs):
    windows = []
    handle = model.backbone.register_forward_pre_hook(
        lambda module, args: windows.append(tuple(args[0].shape[-2:])))
    h, w = inputs.shape[-2:]
    sample = SegDataSample(
        metainfo=dict(
            img_shape=(h, w),
            ori_shape=(h, w),
            pad_shape=(h, w),
            padding_size=[0, 0, 0, 0]))
    try:
        with torch.no_grad():
            result = model.predict(inputs, [sample])[0]
    finally:
        handle.remove()
    return result, windows


def test_slide_inference_on_image_larger_than_crop(segmentor_t):
    model = segmentor_t
    model.test_cfg = ConfigDict(
        mode='slide', crop_size=(128, 128), stride=(85, 85))
    inputs = torch.randn(1, 3, 200, 300, generator=torch.Generator().
                         manual_seed(1))
    result, windows = predict_recording_windows(model, inputs)
    # rows at 0 and 72, columns at 0, 85, 170 and 172: 2 x 4 windows
    assert windows == [(128, 128)] * 8
    assert result.pred_sem_seg.data.shape == (1, 200, 300)
    assert result.seg_logits.data.shape == (150, 200, 300)
    # the top-left 72 x 85 pixels lie in the first window only
    with torch.no_grad():
        first = model.encode_decode(inputs[:, :, :128, :128],
                                    [dict(img_shape=(128, 128))])
    torch.testing.assert_close(result.seg_logits.data[:, :72, :85],
                               first[0, :, :72, :85])


def test_whole_inference(segmentor_t):
    model = segmentor_t
    cfg = Config.fromfile(config_path('t'))
    cfg.merge_from_dict({'model.test_cfg.mode': 'whole'})  # --cfg-options
    model.test_cfg = cfg.model.test_cfg
    inputs = torch.randn(1, 3, 200, 300, generator=torch.Generator().
                         manual_seed(1))
    result, windows = predict_recording_windows(model, inputs)
    assert windows == [(200, 300)]
    assert result.pred_sem_seg.data.shape == (1, 200, 300)
    with torch.no_grad():
        whole = model.encode_decode(inputs, [dict(img_shape=(200, 300))])
    torch.testing.assert_close(result.seg_logits.data, whole[0])


# --- generated ADE20K data ---------------------------------------------------


def test_make_ade20k_layout(tmp_path):
    root = str(tmp_path / 'ade')
    classes = make_ade20k(root, num_train=3, num_val=2, size=(40, 56))
    assert classes == CLASS_IDS and len(classes) >= 10
    assert all(1 <= c <= 150 for c in classes)
    seen = set()
    for split, prefix, num in (('training', 'ADE_train', 3),
                               ('validation', 'ADE_val', 2)):
        images = sorted(glob.glob(osp.join(root, 'images', split, '*.jpg')))
        labels = sorted(
            glob.glob(osp.join(root, 'annotations', split, '*.png')))
        assert [osp.basename(p) for p in images] == [
            f'{prefix}_{i:08d}.jpg' for i in range(1, num + 1)
        ]
        assert [osp.splitext(p)[0] for p in map(osp.basename, labels)
                ] == [osp.splitext(osp.basename(p))[0] for p in images]
        for image, label in zip(images, labels):
            image, label = Image.open(image), Image.open(label)
            assert image.mode == 'RGB' and label.mode == 'L'
            assert image.size == label.size == (56, 40)
            values = set(np.unique(np.asarray(label)).tolist())
            assert values <= {IGNORE_ID, *CLASS_IDS}
            assert len(values - {IGNORE_ID}) >= 3  # 2 regions + objects
            seen |= values
    assert len(seen - {IGNORE_ID}) >= 5

    # mmseg's ADE20KDataset reads it: 0 -> 255 (ignored), c -> c - 1
    init_default_scope('mmseg')
    dataset = ADE20KDataset(
        data_root=root,
        data_prefix=dict(
            img_path='images/validation',
            seg_map_path='annotations/validation'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations')])
    assert len(dataset) == 2
    item = dataset[0]
    raw = np.asarray(Image.open(item['seg_map_path']))
    gt = item['gt_seg_map']
    assert item['img'].shape == (40, 56, 3)
    assert np.all(gt[raw == 0] == 255)
    assert np.array_equal(gt[raw > 0], raw[raw > 0] - 1)
    with pytest.raises(ValueError, match='size'):
        make_ade20k(str(tmp_path / 'bad'), size=(8, 8))


# --- the tools: train, test (slide, whole, TTA), demo ------------------------


def run_tool(*args):
    result = subprocess.run([sys.executable, *args],
                            capture_output=True,
                            text=True,
                            cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[
        -3000:]
    return result.stdout + result.stderr


def small_options(data_root):
    """--cfg-options for a small CPU run of the sMLPNet-T config: 64x64
    crops, 2 iterations, no ImageNet checkpoint, no dataloader workers."""
    cfg = Config.fromfile(config_path('t'))
    assert [t.type for t in cfg.train_dataloader.dataset.pipeline[2:4]
            ] == ['RandomResize', 'RandomCrop']
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        assert loader.dataset.pipeline[1].type == 'Resize'
    c = CROP
    options = [
        'model.backbone.init_cfg=None',
        f'model.data_preprocessor.size=({c},{c})',
        f'train_dataloader.dataset.pipeline.2.scale=({4 * c},{c})',
        f'train_dataloader.dataset.pipeline.3.crop_size=({c},{c})',
        f'model.test_cfg.crop_size=({c},{c})',
        f'model.test_cfg.stride=({2 * c // 3},{2 * c // 3})',
        'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
        'default_hooks.checkpoint.interval=2',
        'default_hooks.checkpoint.save_optimizer=False',  # 220 MB, not 630
        'default_hooks.logger.interval=1'
    ]
    for loader in ('train', 'val', 'test'):
        options += [
            f'{loader}_dataloader.dataset.data_root={data_root}',
            f'{loader}_dataloader.num_workers=0',
            f'{loader}_dataloader.persistent_workers=False'
        ]
        if loader != 'train':
            options.append(
                f'{loader}_dataloader.dataset.pipeline.1.scale=({4 * c},{c})')
    return options


def miou(log: str) -> float:
    values = re.findall(r'mIoU: (\d+\.\d+)', log)
    assert values, log[-3000:]
    value = float(values[-1])
    assert 0 <= value <= 100
    return value


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """Generated ADE20K-format data (through the CLI) and 2 training
    iterations of UperNet + sMLPNet-T on it through tools/train.py."""
    tmp = tmp_path_factory.mktemp('seg')
    data_root = str(tmp / 'ade')
    log = run_tool(
        osp.join(REPO_ROOT, 'tools', 'dataset_converters',
                 'make_synthetic_ade20k.py'), data_root, '--num-train',
        str(NUM_TRAIN), '--num-val', str(NUM_VAL), '--size',
        '%dx%d' % IMAGE_SIZE)
    assert 'Wrote 4 training + 1 validation 96x128 images' in log
    work_dir = str(tmp / 'work')
    log = run_tool(
        osp.join(REPO_ROOT, 'tools', 'train.py'), config_path('t'),
        '--work-dir', work_dir, '--cfg-options', *small_options(data_root))
    return data_root, work_dir, log


def test_train_then_evaluate_slide(trained):
    data_root, work_dir, log = trained
    assert 'SyncBatchNorm (SyncBN) layers in the model will be ' \
        'automatically reverted' in log
    checkpoint = osp.join(work_dir, 'iter_2.pth')
    assert osp.isfile(checkpoint)
    scalars = sorted(
        glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))[-1]
    with open(scalars) as f:
        records = [json.loads(line) for line in f]
    losses = [r for r in records if 'decode.loss_ce' in r]
    assert [r['iter'] for r in losses] == [1, 2]
    assert all(np.isfinite(r['aux.loss_ce']) for r in losses)
    assert any('mIoU' in r for r in records)  # validation after iteration 2
    ckpt = torch.load(checkpoint, map_location='cpu', weights_only=True)
    assert len(ckpt['meta']['dataset_meta']['classes']) == 150

    log = run_tool(
        osp.join(REPO_ROOT, 'tools', 'test.py'), config_path('t'),
        checkpoint, '--work-dir', osp.join(work_dir, 'test_slide'),
        '--show-dir', 'vis', '--cfg-options', *small_options(data_root),
        'model.test_cfg.mode=slide')  # the documented option
    assert "mode='slide'" in log
    miou(log)
    pictures = glob.glob(
        osp.join(work_dir, 'test_slide', 'vis', 'vis_data', 'vis_image',
                 '*.png'))
    # --show-dir: a prediction picture of every test image
    assert len(pictures) == NUM_VAL


def test_evaluate_tta_whole_image(trained):
    data_root, work_dir, _ = trained
    # multi-scale (0.5-1.75) + flip TTA, each view inferred as a whole image
    log = run_tool(
        osp.join(REPO_ROOT, 'tools', 'test.py'), config_path('t'),
        osp.join(work_dir, 'iter_2.pth'), '--tta', '--work-dir',
        osp.join(work_dir, 'test_tta'), '--cfg-options',
        *small_options(data_root))  # whole images: the default
    assert "type='SegTTAModel'" in log
    assert "mode='whole'" in log
    assert f'Iter(test) [{NUM_VAL}/{NUM_VAL}]' in log
    miou(log)


def test_seg_demo_writes_overlay(trained, tmp_path):
    data_root, work_dir, _ = trained
    image = osp.join(data_root, 'images', 'validation',
                     'ADE_val_00000001.jpg')
    out_file = str(tmp_path / 'vis' / 'overlay.jpg')
    # the small test-time resize and windows of the tool runs
    options = [
        o for o in small_options(data_root)
        if o.startswith(('model.test_cfg.', 'test_dataloader.dataset.'))
    ]
    log = run_tool(
        osp.join(REPO_ROOT, 'tools', 'demo', 'seg_demo.py'), image,
        config_path('t'), osp.join(work_dir, 'iter_2.pth'), '--out-file',
        out_file, '--device', 'cpu', '--opacity', '0.5', '--cfg-options',
        *options)
    assert f'Saved {out_file}' in log
    picture = np.asarray(Image.open(out_file).convert('RGB'), np.float32)
    original = np.asarray(Image.open(image).convert('RGB'), np.float32)
    assert picture.shape == original.shape == IMAGE_SIZE + (3, )
    # half image, half class colours: clearly not the image itself
    assert np.abs(picture - original).mean() > 5

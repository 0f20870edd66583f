# Copyright (c) mmsmlp contributors. All rights reserved.
"""Validation images decoded, resized and cropped by the data preprocessor
(LoadJPEGBytes + JPEGDecodeDataPreprocessor, configs/gpudecode/) give what
the CPU test pipeline gives. On the CPU, where these tests run, both paths
decode with libjpeg-turbo; on a GPU the decoder is nvJPEG (pixels differ
by about a level there, docs/benchmarks.md)."""
import copy
import os.path as osp
import pickle
import re

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate, pseudo_collate
from mmengine.runner import Runner
from mmpretrain.registry import MODELS
from PIL import Image

from mmsmlp.datasets import make_imagenet
from .conftest import REPO_ROOT, run_tool

T_CONFIG = osp.join(REPO_ROOT, 'configs', 'smlpnet',
                    'smlpnet-t_8xb128_in1k.py')
GPU_CONFIG = osp.join(REPO_ROOT, 'configs', 'gpudecode',
                      'smlpnet-t_8xb128_in1k_gpudecode.py')
NORM = dict(
    num_classes=10,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)


def cpu_pipeline(scale=256, crop=224):
    return Compose([
        dict(type='CheckedLoadImageFromFile'),
        dict(type='ResizeEdge', scale=scale, edge='short', backend='pillow',
             interpolation='bicubic'),
        dict(type='CenterCrop', crop_size=crop),
        dict(type='PackInputs'),
    ])


def bytes_pipeline(**kwargs):
    return Compose([dict(type='LoadJPEGBytes', **kwargs),
                    dict(type='PackInputs')])


def run(pipeline, preprocessor, paths, collate=pseudo_collate):
    batch = collate([
        pipeline(dict(img_path=p, gt_label=i % 10))
        for i, p in enumerate(paths)
    ])
    return preprocessor(batch, False)


def levels(inputs, std=NORM['std']):
    """Normalised inputs back in 0-255 levels."""
    return inputs * torch.tensor(std).view(1, 3, 1, 1)


def sharp_image(width, height, seed=0):
    """RGB: a 7-px checkerboard in red, 3-px stripes in green, noise in blue
    (a channel swap or a one-pixel shift of the crop changes most pixels)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:height, :width]
    img = np.empty((height, width, 3), np.uint8)
    img[..., 0] = ((x // 7 + y // 7) % 2) * 255
    img[..., 1] = ((x // 3) % 2) * 230
    img[..., 2] = rng.integers(0, 256, (height, width))
    return img


def smooth_image(width, height, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3),
                         dtype=np.uint8)
    return np.asarray(
        Image.fromarray(small).resize((width, height), Image.BILINEAR))


# landscape, portrait, odd sizes, ImageNet-like, smaller than the resize
# (upscaled), one whose short edge is already 256 (no resize), square
SIZES = [(500, 375), (333, 500), (301, 229), (199, 150), (257, 256),
         (480, 480), (256, 343), (461, 347)]


@pytest.fixture(scope='module')
def jpegs(tmp_path_factory):
    root = tmp_path_factory.mktemp('jpegs')
    paths = []
    for i, (w, h) in enumerate(SIZES):
        for kind, draw in (('sharp', sharp_image), ('smooth', smooth_image)):
            path = str(root / f'{kind}_{w}x{h}.JPEG')
            Image.fromarray(draw(w, h, i)).save(path, quality=92)
            paths.append(path)
    for w, h in ((375, 500), (500, 334)):  # grayscale JPEGs (1 component)
        path = str(root / f'gray_{w}x{h}.JPEG')
        Image.fromarray(sharp_image(w, h)).convert('L').save(path)
        paths.append(path)
    return paths


@pytest.fixture(scope='module')
def odd_files(tmp_path_factory):
    """Files the GPU path hands to the CPU: a PNG named .JPEG (as one
    ImageNet training image), a CMYK JPEG, an EXIF-rotated JPEG, a
    progressive JPEG."""
    root = tmp_path_factory.mktemp('odd')
    img = Image.fromarray(sharp_image(320, 240))
    png = str(root / 'png.JPEG')
    img.save(png, format='PNG')
    cmyk = str(root / 'cmyk.JPEG')
    img.convert('CMYK').save(cmyk, quality=95)
    rotated = str(root / 'rotated.JPEG')
    exif = img.getexif()
    exif[0x0112] = 6  # turned 90 degrees: OpenCV shows it 240 x 320
    img.save(rotated, exif=exif, quality=95)
    progressive = str(root / 'progressive.JPEG')
    img.save(progressive, quality=95, progressive=True)
    return [png, cmyk, rotated, progressive]


def assert_like_cpu(got, want):
    """Same shape; at most 1 level apart, 0.01 level on average. Both paths
    decode with libjpeg-turbo here and resample as Pillow does (two passes,
    each rounded to uint8); what is left is Pillow's fixed-point filter
    coefficients against float ones, which move a value across a rounding
    boundary now and then (a level). A channel swap or a one-pixel shift
    differs by tens of levels (test_tolerance_catches_swaps_and_shifts)."""
    assert got.shape == want.shape
    diff = (levels(got) - levels(want)).abs()
    assert diff.amax().item() <= 1.0 + 1e-3, diff.amax(dim=(1, 2, 3))
    assert diff.mean(dim=(1, 2, 3)).amax().item() < 0.01


def test_same_inputs_as_the_cpu_pipeline(jpegs):
    cpu = MODELS.build(dict(type='BatchedClsDataPreprocessor', **NORM))
    gpu = MODELS.build(dict(type='JPEGDecodeDataPreprocessor', **NORM))
    want = run(cpu_pipeline(), cpu, jpegs, default_collate)
    got = run(bytes_pipeline(), gpu, jpegs)
    assert got['inputs'].shape == (len(jpegs), 3, 224, 224)
    assert_like_cpu(got['inputs'], want['inputs'])
    # labels and metainfo as the CPU path's
    for g, w in zip(got['data_samples'], want['data_samples']):
        assert torch.equal(g.gt_label, w.gt_label)
        for key in ('img_path', 'ori_shape', 'img_shape', 'scale_factor'):
            assert g.metainfo[key] == w.metainfo[key], key


def test_workers_hand_on_bytes(jpegs):
    packed = bytes_pipeline()(dict(img_path=jpegs[0], gt_label=0))
    with open(jpegs[0], 'rb') as f:
        data = f.read()
    assert packed['inputs'].dtype == torch.uint8
    assert packed['inputs'].shape == (len(data), )
    assert packed['inputs'].numpy().tobytes() == data


def test_exif_without_turn_stays_on_the_gpu_path(tmp_path):
    img = Image.fromarray(sharp_image(320, 240))
    exif = img.getexif()
    exif[0x0112] = 1  # upright
    exif[0x010F] = 'camera'
    path = str(tmp_path / 'upright.JPEG')
    img.save(path, exif=exif)
    packed = bytes_pipeline()(dict(img_path=path, gt_label=0))
    assert packed['inputs'].dim() == 1
    assert packed['data_samples'].ori_shape == (240, 320)


def test_tolerance_catches_swaps_and_shifts(jpegs):
    """The tolerance above fails for a channel swap (RGB/BGR), for a crop
    one pixel off in either direction and for a size off by one."""
    cpu = MODELS.build(dict(type='BatchedClsDataPreprocessor', **NORM))
    sharp = [p for p in jpegs if 'sharp' in p]
    want = run(cpu_pipeline(), cpu, sharp, default_collate)['inputs']
    gpu = MODELS.build(dict(type='JPEGDecodeDataPreprocessor', **NORM))
    got = run(bytes_pipeline(), gpu, sharp)['inputs']
    bgr = MODELS.build(dict(
        type='JPEGDecodeDataPreprocessor', **dict(NORM, to_rgb=False)))
    wrong = {
        'swapped': got.flip(1),
        'not flipped by to_rgb=False': run(bytes_pipeline(), bgr,
                                           sharp)['inputs'],
    }
    for name, bad in wrong.items():
        with pytest.raises(AssertionError):
            assert_like_cpu(bad, want)
    for dim in (2, 3):  # rows, columns
        n = want.shape[dim] - 1
        with pytest.raises(AssertionError):
            assert_like_cpu(got.narrow(dim, 1, n), want.narrow(dim, 0, n))
    # the crop of a 257-px resize: one pixel less on the left
    big = run(cpu_pipeline(scale=257), cpu, sharp, default_collate)['inputs']
    with pytest.raises(AssertionError):
        assert_like_cpu(got, big)


def test_other_channel_order_and_crop_size(jpegs):
    """to_rgb=False (the model takes BGR) and other sizes, through the
    parent's options."""
    options = dict(NORM, to_rgb=False)
    cpu = MODELS.build(dict(type='BatchedClsDataPreprocessor', **options))
    gpu = MODELS.build(dict(type='JPEGDecodeDataPreprocessor', scale=160,
                            crop_size=144, **options))
    want = run(cpu_pipeline(160, 144), cpu, jpegs, default_collate)
    got = run(bytes_pipeline(scale=160, crop_size=144), gpu, jpegs)
    assert_like_cpu(got['inputs'], want['inputs'])


def test_other_inputs_go_to_the_parent(jpegs):
    """Decoded images (stacked or in lists) and training batches: the
    parent's outputs."""
    options = dict(NORM, to_onehot=True)
    cpu = MODELS.build(dict(type='BatchedClsDataPreprocessor', **options))
    gpu = MODELS.build(dict(type='JPEGDecodeDataPreprocessor', **options))
    for collate in (default_collate, pseudo_collate):
        batch = collate([
            cpu_pipeline()(dict(img_path=p, gt_label=1)) for p in jpegs[:4]
        ])
        want = cpu(copy.deepcopy(batch), True)
        got = gpu(copy.deepcopy(batch), True)
        assert torch.equal(got['inputs'], want['inputs'])
        for g, w in zip(got['data_samples'], want['data_samples']):
            assert torch.equal(g.gt_score, w.gt_score)


def test_files_the_gpu_does_not_take_are_loaded_on_the_cpu(jpegs, odd_files):
    cpu = MODELS.build(dict(type='BatchedClsDataPreprocessor', **NORM))
    gpu = MODELS.build(dict(type='JPEGDecodeDataPreprocessor', **NORM))
    for path in odd_files:  # the CPU pipeline's crop, BGR
        packed = bytes_pipeline()(dict(img_path=path, gt_label=0))
        assert packed['inputs'].shape == (3, 224, 224), path
    # mixed with JPEG bytes, and alone
    for paths in (odd_files + jpegs[:3], odd_files):
        want = run(cpu_pipeline(), cpu, paths, default_collate)
        got = run(bytes_pipeline(), gpu, paths)
        assert_like_cpu(got['inputs'], want['inputs'])
    rotated = got['data_samples'][2]
    assert rotated.ori_shape == (320, 240)
    # an image loaded by the caller (mmpretrain's inferencers)
    img = sharp_image(333, 250)[..., ::-1].copy()  # BGR, as OpenCV loads
    packed = bytes_pipeline()(dict(img=img, gt_label=0))
    want = cpu_pipeline()(dict(img=img, gt_label=0))  # its load passes it
    assert torch.equal(packed['inputs'], want['inputs'])
    assert packed['inputs'].shape == (3, 224, 224)


def test_broken_files_are_named(jpegs, tmp_path):
    with open(jpegs[0], 'rb') as f:
        data = f.read()
    truncated = str(tmp_path / 'truncated.JPEG')
    with open(truncated, 'wb') as f:
        f.write(data[:len(data) // 2])
    junk = str(tmp_path / 'junk.JPEG')
    with open(junk, 'wb') as f:
        f.write(b'not an image at all')
    missing = str(tmp_path / 'missing.JPEG')
    for path, reason in ((truncated, 'truncated JPEG'),
                         (junk, 'cannot be decoded'), (missing, 'No such')):
        with pytest.raises(ValueError, match=f'Broken image {path}: .*'
                           f'{reason}'):
            bytes_pipeline()(dict(img_path=path, gt_label=0))
    # a bad Huffman table: the header is fine, the decoder refuses it
    # (in the data preprocessor, from a batch: the file is named)
    dht = data.index(b'\xff\xc4')
    bad = bytearray(data)
    bad[dht + 5:dht + 21] = b'\xff' * 16
    bad_huffman = str(tmp_path / 'bad_huffman.JPEG')
    with open(bad_huffman, 'wb') as f:
        f.write(bad)
    gpu = MODELS.build(dict(type='JPEGDecodeDataPreprocessor', **NORM))
    with pytest.raises(ValueError, match=f'Broken image {bad_huffman}: '
                       'cannot be decoded'):
        run(bytes_pipeline(), gpu, [jpegs[0], bad_huffman, jpegs[1]])


def test_pipeline_and_preprocessor_must_agree(jpegs):
    gpu = MODELS.build(dict(type='JPEGDecodeDataPreprocessor', scale=288,
                            **NORM))
    with pytest.raises(ValueError, match=r'scale=288, crop_size=224\) gives '
                       rf'{jpegs[0]} img_shape \(224, 224\) and scale_factor'
                       r'.*give LoadJPEGBytes and the data preprocessor the '
                       'same scale'):
        run(bytes_pipeline(), gpu, jpegs[:2])
    gpu = MODELS.build(dict(type='JPEGDecodeDataPreprocessor', crop_size=200,
                            **NORM))
    with pytest.raises(ValueError, match='img_shape'):
        run(bytes_pipeline(), gpu, jpegs[:2])
    with pytest.raises(ValueError, match="interpolation must be 'bicubic' "
                       "or 'bilinear', not 'lanczos'"):
        MODELS.build(dict(type='JPEGDecodeDataPreprocessor',
                          interpolation='lanczos'))


def test_config_moves_only_validation():
    std, gpu = Config.fromfile(T_CONFIG), Config.fromfile(GPU_CONFIG)
    assert gpu.train_dataloader == std.train_dataloader
    assert gpu.model == std.model
    assert gpu.data_preprocessor.type == 'JPEGDecodeDataPreprocessor'
    loaders = (gpu.val_dataloader, gpu.test_dataloader)
    for loader in loaders:
        assert loader.collate_fn.type == 'pseudo_collate'
        assert [t['type'] for t in loader.dataset.pipeline] == [
            'LoadJPEGBytes', 'PackInputs'
        ]
    # the CPU test pipeline's resize and crop
    resize, crop = std.test_pipeline[1], std.test_pipeline[2]
    load = gpu.test_pipeline[0]
    for cfg in (load, gpu.data_preprocessor):
        assert (cfg.scale, cfg.crop_size, cfg.interpolation) == (
            resize.scale, crop.crop_size, resize.interpolation)
    assert resize.backend == 'pillow' and resize.edge == 'short'


def test_runner_gives_the_standard_configs_predictions(tmp_path):
    """A test run (mmengine's Runner, as tools/test.py) of a tiny sMLPNet
    on a generated ImageNet-format set of photo-sized JPEGs: the same
    top-1 and predictions as the standard config."""
    root = str(tmp_path / 'imagenet')
    make_imagenet(root, num_classes=10, train_per_class=1, val_per_class=4,
                  size=(300, 420), workers=1)
    torch.manual_seed(0)
    results = {}
    for name, path in (('cpu', T_CONFIG), ('gpu', GPU_CONFIG)):
        cfg = Config.fromfile(path)
        cfg.model.backbone.arch = dict(
            embed_dims=16, depths=[1, 1, 1, 1], mlp_ratio=2)
        cfg.model.head.in_channels = 128
        cfg.data_preprocessor.num_classes = 1000
        if name == 'cpu':
            model = MODELS.build(
                dict(cfg.model, data_preprocessor=cfg.data_preprocessor))
            checkpoint = str(tmp_path / 'tiny.pth')
            torch.save({'state_dict': model.state_dict()}, checkpoint)
        cfg.test_dataloader.update(
            batch_size=8, num_workers=0, persistent_workers=False)
        cfg.test_dataloader.dataset.update(
            data_root=root, split='val', data_prefix='val',
            ann_file='meta/val.txt')
        cfg.test_dataloader.dataset.pop('split')
        out = str(tmp_path / f'{name}.pkl')
        cfg.test_evaluator = [
            dict(type='BatchedAccuracy', topk=(1, 5)),
            dict(type='DumpResults', out_file_path=out)
        ]
        cfg.custom_hooks = []  # EMA: a checkpoint of the model alone
        cfg.load_from = checkpoint
        cfg.work_dir = str(tmp_path / name)
        runner = Runner.from_cfg(cfg)
        metrics = runner.test()
        with open(out, 'rb') as f:
            results[name] = (metrics, pickle.load(f))
    (cpu_metrics, cpu_preds), (gpu_metrics, gpu_preds) = (results['cpu'],
                                                          results['gpu'])
    assert len(cpu_preds) == len(gpu_preds) == 40
    assert gpu_metrics == cpu_metrics
    for c, g in zip(cpu_preds, gpu_preds):
        assert c['img_path'] == g['img_path']
        assert torch.equal(c['pred_label'], g['pred_label'])
        torch.testing.assert_close(g['pred_score'], c['pred_score'],
                                   atol=1e-4, rtol=0)
    # the predictions are not all one class (the comparison means something)
    labels = {int(p['pred_label']) for p in cpu_preds}
    assert len(labels) > 1, labels


def test_check_tool_compares_and_times(tmp_path):
    """tools/analysis_tools/gpu_decode_check.py (for the GPU) on the CPU:
    the differences it reports are the tests' (at most 1 level)."""
    out = run_tool('analysis_tools/gpu_decode_check.py', GPU_CONFIG,
                   '--data', str(tmp_path / 'data'), '--images', '20',
                   '--long-side', '300', '420', '--batch', '8',
                   '--repeats', '1')
    match = re.search(
        r'20 images on cpu: \|GPU path - CPU pipeline\| in levels: mean '
        r'([0-9.]+), max ([0-9]+); .* per image mean at most ([0-9.]+)', out)
    assert match, out
    assert float(match[1]) < 0.01 and int(match[2]) <= 1
    assert re.search(r'data preprocessor, batch 8: host [0-9.]+ ms, total '
                     r'[0-9.]+ ms = [0-9]+ img/s', out), out

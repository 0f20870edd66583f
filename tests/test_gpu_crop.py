# Copyright (c) mmsmlp contributors. All rights reserved.
"""The GPU crop path (configs/gpuaug/*_gpucrop.py): the workers crop and
draw, the device resizes with Pillow's arithmetic and flips; the images are
upstream's ``RandomResizedCrop(backend='pillow')`` + ``RandomFlip``, bit for
bit. Triton's kernels run here under its interpreter (conftest)."""
import copy
import os.path as osp
import re
from unittest import mock

import mmcv
import numpy as np
import PIL
import pytest
import torch
from mmcv.transforms import Compose
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.registry import FUNCTIONS
from mmpretrain.registry import MODELS, TRANSFORMS

from mmsmlp.datasets import crop_collate, make_imagenet
from mmsmlp.datasets.crop_batch import (PRECISION_BITS, make_crop_batch,
                                        width_first)
from mmsmlp.models.gpu_crop import resize_crops
from .conftest import REPO_ROOT, run_tool, tiny_imagenet_options
from .test_gpu_augment import ERASING, RANDAUG, photo

GPUCROP = osp.join(REPO_ROOT,
                   'configs/gpuaug/smlpnet-t_8xb128_in1k_gpucrop.py')
GPUAUG = GPUCROP.replace('gpucrop', 'gpuaug')


def upstream_resize(crop, out_h, out_w, interpolation, flip):
    """What upstream's RandomResizedCrop + RandomFlip make of a crop."""
    img = mmcv.imresize(crop, (out_w, out_h), interpolation=interpolation,
                        backend='pillow')
    return mmcv.imflip(img, 'horizontal') if flip else img


def crops_and_sizes(rng, out_h, out_w):
    """Crop sizes that take every branch: Pillow's two orders of the
    passes, upscaling, one pass only (a side already at the output size),
    no resize at all, a one-pixel-wide crop, a large downscale."""
    sizes = [(out_h, out_w), (out_h, 3 * out_w), (4 * out_h, out_w),
             (out_h // 2, out_w // 3), (5 * out_h, 2 * out_w),
             (3 * out_h + 1, out_w + 7), (2, 1), (7 * out_h, 9 * out_w)]
    sizes += [tuple(rng.integers(1, 5 * max(out_h, out_w), 2))
              for _ in range(8)]
    return [photo(int(rng.integers(1 << 20)), int(h), int(w))
            for h, w in sizes]


def resize_formula(batch) -> np.ndarray:
    """The kernels' arithmetic in numpy, from the batch's tables: each pass
    sums the taps' pixels times their 22-bit weights, adds the rounding
    offset, shifts and clips to uint8, in the batch's order of the passes,
    then the flip. Independent of the installed Pillow, so on a GPU it
    tells a kernel's error from another Pillow version's arithmetic."""
    pixels = batch.pixels.cpu().numpy()
    half = 1 << (PRECISION_BITS - 1)

    def one_pass(img, bounds, weights, axis):
        first, count = bounds[:, 0].astype(np.int64), bounds[:, 1]
        shape = list(img.shape)
        shape[axis] = len(first)
        acc = np.full(shape, half, dtype=np.int64)
        for k in range(weights.shape[1]):
            valid = k < count
            index = np.where(valid, first + k, 0)
            w = np.where(valid, weights[:, k], 0).astype(np.int64)
            taps = np.take(img, index, axis=axis).astype(np.int64)
            acc += taps * (w if axis == 2 else w[:, None])
        return np.clip(acc >> PRECISION_BITS, 0, 255).astype(np.uint8)

    w_first = set(batch.order[:batch.num_width_first].tolist())
    out = []
    for i, ((h, w), (start, _, _), flip) in enumerate(zip(
            batch.sizes.tolist(), batch.offsets.tolist(),
            batch.flip.tolist())):
        img = pixels[start:start + 3 * h * w].reshape(3, h, w)
        along_w = (batch.w_bounds[i].numpy(), batch.w_weights[i].numpy(), 2)
        along_h = (batch.h_bounds[i].numpy(), batch.h_weights[i].numpy(), 1)
        for bounds, weights, axis in ((along_w, along_h) if i in w_first
                                      else (along_h, along_w)):
            img = one_pass(img, bounds, weights, axis)
        out.append(img[:, :, ::-1] if flip else img)
    return np.stack(out)


def cuda_test_batch():
    """The batch of the CUDA test: every branch at 224x224, and a photo."""
    rng = np.random.default_rng(5)
    crops = crops_and_sizes(rng, 224, 224) + [photo(9, 500, 375)]
    flips = [bool(f) for f in rng.integers(0, 2, len(crops))]
    return make_crop_batch(
        [torch.from_numpy(c.transpose(2, 0, 1).copy()) for c in crops],
        (224, 224), flips)


def differing_crops(got, want) -> list:
    """(index, pixels, max difference) of each crop where they differ."""
    got, want = np.asarray(got).astype(int), np.asarray(want).astype(int)
    return [(i, int((g != w).sum()), int(abs(g - w).max()))
            for i, (g, w) in enumerate(zip(got, want))
            if not np.array_equal(g, w)]


@pytest.mark.parametrize('pillow, want', [
    # 1120x448 -> 224x224: the height shrinks by more than twice the
    # width's pixels; 256x2: over 100 times taller than wide
    ('13.0.0', [False, False, True]),
    ('12.3.0', [True, False, True]),
    ('12.1.1', [True, True, True]),
])
def test_order_of_the_passes_follows_pillows_version(pillow, want):
    """Pillow 13.0 resizes along the height first when the height shrinks
    by more than twice the width's pixels (ImagingResampleInner), 12.2-12.3
    when the image is over 100 times taller than wide and shrinks
    (Image.resize), earlier always along the width first; the weights are
    the same (test_formula_is_pillows checks the installed Pillow)."""
    got = width_first(np.array([1120, 256, 200]), np.array([448, 2, 300]),
                      224, 224, pillow=pillow)
    assert got.tolist() == want


def test_formula_is_pillows():
    """The numpy form of the kernels' arithmetic equals upstream's Pillow
    resize on the CUDA test's batch (large crops included) and on a
    validation window."""
    batch = cuda_test_batch()
    want = resize_crops(batch, kernels=False).numpy()
    assert differing_crops(resize_formula(batch), want) == []
    window = make_crop_batch(
        [torch.from_numpy(photo(4, 375, 500).transpose(2, 0, 1).copy())],
        (224, 224), [False], targets=[(256, 341)], windows=[(16, 58)])
    assert differing_crops(resize_formula(window),
                           resize_crops(window, kernels=False).numpy()) == []


@pytest.mark.parametrize('interpolation,out', [('bicubic', (24, 20)),
                                               ('bilinear', (16, 16))])
def test_kernels_resize_and_flip_as_upstream(interpolation, out):
    rng = np.random.default_rng(3)
    out_h, out_w = out
    # and a crop over 100 times taller than wide: Pillow 12.2-12.3's height
    # first (13.0's too)
    crops = crops_and_sizes(rng, out_h, out_w) + [photo(17, 256, 2)]
    flips = [bool(f) for f in rng.integers(0, 2, len(crops))]
    sizes = np.array([c.shape[:2] for c in crops])
    first = width_first(sizes[:, 0], sizes[:, 1], out_h, out_w)
    assert first.any() and not first.all()  # both orders are covered
    batch = make_crop_batch(
        [torch.from_numpy(c.transpose(2, 0, 1).copy()) for c in crops],
        out, flips, interpolation)
    want = np.stack([
        upstream_resize(c, out_h, out_w, interpolation, f)
        for c, f in zip(crops, flips)
    ]).transpose(0, 3, 1, 2)
    for kernels in (True, False):
        got = resize_crops(batch, kernels=kernels)
        assert got.dtype == torch.uint8
        assert got.shape == (len(crops), 3, out_h, out_w)
        np.testing.assert_array_equal(got.numpy(), want)
    # the order of the passes changes pixels (each pass rounds to uint8):
    # equality above means each image took Pillow's
    def resize(img, size):
        return mmcv.imresize(img, size, interpolation=interpolation,
                             backend='pillow')
    assert any(not np.array_equal(
        upstream_resize(crop, out_h, out_w, interpolation, False),
        resize(resize(crop, (out_w, crop.shape[0])), (out_w, out_h)))
        for crop, w_first in zip(crops, first) if not w_first)


# ---- the workers' transforms --------------------------------------------

def pipelines(erasing=ERASING, scale=64):
    upstream = [
        dict(type='RandomResizedCrop', scale=scale, backend='pillow',
             interpolation='bicubic'),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='RandAugmentParams', **RANDAUG),
        dict(type='RandomErasingParams', **erasing),
        dict(type='PackInputs', meta_keys=('img_shape', 'flip',
                                           'flip_direction',
                                           'randaug_params', 'erase_params'))
    ]
    ours = copy.deepcopy(upstream)
    ours[0]['type'] = 'RandomResizedCropParams'
    ours[1]['type'] = 'RandomFlipParams'
    ours[-1]['meta_keys'] += ('crop_resize', 'crop_flip')
    return (Compose([TRANSFORMS.build(t) for t in upstream]),
            Compose([TRANSFORMS.build(t) for t in ours]))


def samples(n=12, **kwargs):
    upstream, ours = pipelines(**kwargs)
    a, b = [], []
    for i in range(n):
        img = photo(200 + i, 90 + 7 * i, 150 - 5 * i)
        np.random.seed(i)
        a.append(upstream(dict(img=img.copy(), gt_label=i % 10)))
        a_state = np.random.get_state()[1].copy()
        np.random.seed(i)
        b.append(ours(dict(img=img.copy(), gt_label=i % 10)))
        # the same draws, and none more: later images get the same ones
        np.testing.assert_array_equal(np.random.get_state()[1], a_state)
    return a, b


def test_workers_draw_what_upstream_draws():
    upstream, ours = samples()
    assert {s['data_samples'].flip for s in ours} == {True, False}
    for a, b in zip(upstream, ours):
        sa, sb = a['data_samples'], b['data_samples']
        for key in ('img_shape', 'flip', 'flip_direction'):
            assert sa.get(key) == sb.get(key), key
        np.testing.assert_array_equal(sa.randaug_params, sb.randaug_params)
        np.testing.assert_array_equal(sa.erase_params, sb.erase_params)
        assert sb.crop_resize == (64, 64, 'bicubic')
        assert sb.crop_flip == sa.flip
        crop = b['inputs'].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(
            upstream_resize(crop, 64, 64, 'bicubic', sb.crop_flip),
            a['inputs'].permute(1, 2, 0).numpy())


def test_collate_and_preprocessor_equal_the_gpuaug_path():
    """Through crop_collate and the data preprocessor (the kernels, and
    the plain form): the same normalised batch, labels and Mixup/CutMix
    scores as the gpuaug config's path (default_collate of upstream's
    crops)."""
    upstream, ours = samples(erasing=dict(ERASING, erase_prob=0.5))
    assert any(s['data_samples'].erase_params[0] for s in ours)
    batch = crop_collate(copy.deepcopy(ours))
    assert type(batch['inputs']).__name__ == 'CropBatch'
    want_batch = default_collate(copy.deepcopy(upstream))
    pre = MODELS.build(dict(
        type='GPUAugClsDataPreprocessor', num_classes=10,
        mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
        to_rgb=True, batch_augments=dict(augments=[
            dict(type='AsyncMixup', alpha=0.8),
            dict(type='AsyncCutMix', alpha=1.0)])))

    def run(data, seed=0):
        # the erasing noise and Mixup/CutMix draw from torch and numpy
        torch.manual_seed(seed)
        np.random.seed(seed)
        return pre(copy.deepcopy(data), True)

    want = run(want_batch)
    assert any(s.gt_score.max() < 1 for s in want['data_samples'])
    pre.side_stream = True  # a second CUDA stream: nothing on CPU
    got = run(batch)
    assert torch.equal(got['inputs'], want['inputs'])
    for kernels in (True, False):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr('mmsmlp.models.data_preprocessor.resize_crops',
                       lambda b, k=kernels: resize_crops(b, kernels=k))
            got = run(batch)
        assert torch.equal(got['inputs'], want['inputs'])
        for a, b in zip(got['data_samples'], want['data_samples']):
            assert torch.equal(a.gt_label, b.gt_label)
            assert torch.equal(a.gt_score, b.gt_score)
    # not training: resized and flipped, not augmented
    plain = pre(copy.deepcopy(batch), False)['inputs']
    resized = resize_crops(batch['inputs'], kernels=False).float()
    mean = torch.tensor([123.675, 116.28, 103.53]).view(1, 3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(1, 3, 1, 1)
    torch.testing.assert_close(plain, (resized.flip(1) - mean) / std)


def test_validation_path_is_upstreams_resize_and_centre_crop():
    """ResizeEdgeParams + CenterCropParams, crop_collate and the device
    resize (kernels and plain form): upstream's ResizeEdge + CenterCrop
    batch, pixel for pixel, with its metadata."""
    keys = ('img_shape', 'scale_factor', 'ori_shape')
    resize = dict(type='ResizeEdge', scale=48, edge='short',
                  backend='pillow', interpolation='bicubic')
    upstream = Compose([TRANSFORMS.build(t) for t in (
        resize, dict(type='CenterCrop', crop_size=40),
        dict(type='PackInputs', meta_keys=keys))])
    ours = Compose([TRANSFORMS.build(t) for t in (
        dict(resize, type='ResizeEdgeParams'),
        dict(type='CenterCropParams', crop_size=40),
        dict(type='PackInputs',
             meta_keys=keys + ('crop_resize', 'crop_window')))])
    # landscape and portrait, shrunk and enlarged, both orders of passes
    # (of Pillow 12.2-12.3 too: over 100 times taller than wide)
    sizes = [(60, 90), (90, 60), (49, 48), (30, 41), (200, 50), (47, 300),
             (4901, 49)]
    imgs = [photo(40 + i, h, w) for i, (h, w) in enumerate(sizes)]
    want = default_collate([
        upstream(dict(img=img, ori_shape=img.shape[:2])) for img in imgs])
    got = crop_collate([
        ours(dict(img=img, ori_shape=img.shape[:2])) for img in imgs])
    first = width_first(np.array([h for h, _ in sizes]),
                        np.array([w for _, w in sizes]),
                        got['inputs'].targets[:, 0].numpy(),
                        got['inputs'].targets[:, 1].numpy())
    assert first.any() and not first.all()
    for kernels in (True, False):
        assert torch.equal(resize_crops(got['inputs'], kernels=kernels),
                           want['inputs'])
    for a, b in zip(got['data_samples'], want['data_samples']):
        for key in keys:
            assert a.get(key) == b.get(key), key
    with pytest.raises(ValueError, match='must follow ResizeEdgeParams'):
        TRANSFORMS.build(dict(type='CenterCropParams', crop_size=8))(
            dict(img=imgs[0]))
    with pytest.raises(ValueError, match='larger than the resized'):
        ours.transforms[1].crop_size = (60, 60)
        ours(dict(img=imgs[0], img_path='a.jpg'))


def test_inferencer_gives_the_base_configs_scores(tmp_path):
    """mmpretrain's inferencer collates with default_collate: the data
    preprocessor does the pending resize itself; the scores are the base
    config's for the same weights."""
    from mmpretrain import ImageClassificationInferencer
    path = str(tmp_path / 'x.jpg')
    mmcv.imwrite(photo(3, 300, 420), path)
    scores = []
    for config in (GPUCROP, osp.join(
            REPO_ROOT, 'configs/smlpnet/smlpnet-t_8xb128_in1k.py')):
        torch.manual_seed(0)  # the same initial weights
        inferencer = ImageClassificationInferencer(config, device='cpu')
        scores.append(inferencer(path)[0]['pred_scores'])
    np.testing.assert_array_equal(scores[0], scores[1])


def test_batches_without_pending_crops_are_default_collates():
    upstream, ours = samples(n=3)
    got = crop_collate(copy.deepcopy(upstream))
    want = default_collate(copy.deepcopy(upstream))
    assert torch.equal(got['inputs'], want['inputs'])
    assert FUNCTIONS.get('crop_collate') is crop_collate


def test_bad_pipelines_and_batches_are_refused():
    with pytest.raises(ValueError, match="backend='pillow'"):
        TRANSFORMS.build(dict(type='RandomResizedCropParams', scale=8,
                              backend='cv2'))
    with pytest.raises(ValueError, match='interpolation in'):
        TRANSFORMS.build(dict(type='RandomResizedCropParams', scale=8,
                              backend='pillow', interpolation='lanczos'))
    with pytest.raises(ValueError, match="direction must be 'horizontal'"):
        TRANSFORMS.build(dict(type='RandomFlipParams', prob=0.5,
                              direction='vertical'))
    flip = TRANSFORMS.build(dict(type='RandomFlipParams', prob=1.))
    with pytest.raises(ValueError, match='must follow RandomResizedCrop'):
        flip(dict(img=photo(1, 20, 20)))
    with pytest.raises(ValueError, match='flips images only'):
        flip(dict(img=photo(1, 20, 20), crop_resize=(8, 8, 'bicubic'),
                  gt_bboxes=np.zeros((1, 4))))
    upstream, ours = samples(n=2)
    with pytest.raises(ValueError, match='have no crop_resize'):
        crop_collate([ours[0], upstream[1]])
    other = copy.deepcopy(ours[1])
    other['data_samples'].set_metainfo(dict(crop_resize=(32, 32, 'bicubic')))
    with pytest.raises(ValueError, match='resized alike'):
        crop_collate([ours[0], other])
    gray = copy.deepcopy(ours[1])
    gray['inputs'] = gray['inputs'][:1]
    with pytest.raises(ValueError, match='3-channel'):
        crop_collate([ours[0], gray])


# ---- the configs --------------------------------------------------------

def test_gpucrop_config_is_the_gpuaug_config_with_the_crop_on_the_device():
    cfg, aug = Config.fromfile(GPUCROP), Config.fromfile(GPUAUG)
    ours = [dict(t) for t in cfg.train_dataloader.dataset.pipeline]
    theirs = [dict(t) for t in aug.train_dataloader.dataset.pipeline]
    swapped = {'RandomResizedCropParams': 'RandomResizedCrop',
               'RandomFlipParams': 'RandomFlip'}
    for step in ours:
        step['type'] = swapped.get(step['type'], step['type'])
    keys = list(ours[-1].pop('meta_keys'))
    assert [k for k in keys if k not in ('crop_resize', 'crop_flip')] == \
        list(theirs[-1].pop('meta_keys'))
    assert ours == theirs
    assert cfg.train_dataloader.collate_fn == dict(type='crop_collate')
    # validation: the workers resize, as in the gpuaug config (faster on
    # the H200 machine; the device resize is an option, tested above in
    # test_validation_path_is_upstreams_resize_and_centre_crop)
    for split in ('val', 'test'):
        assert cfg[f'{split}_dataloader'] == aug[f'{split}_dataloader']
    assert cfg.data_preprocessor == dict(aug.data_preprocessor,
                                         side_stream=True)
    for key in ('model', 'custom_hooks', 'optim_wrapper', 'val_evaluator'):
        assert cfg[key] == aug[key], key


@pytest.mark.parametrize('arch', ['s', 'b'])
def test_gpucrop_configs_of_s_and_b(arch):
    cfg = Config.fromfile(GPUCROP.replace('-t_', f'-{arch}_'))
    t = Config.fromfile(GPUCROP)
    aug = Config.fromfile(GPUAUG.replace('-t_', f'-{arch}_'))
    assert cfg.model == aug.model
    assert cfg.train_dataloader == t.train_dataloader
    assert cfg.data_preprocessor == t.data_preprocessor
    assert cfg.val_dataloader == t.val_dataloader
    for key in ('optim_wrapper', 'param_scheduler', 'custom_hooks'):
        assert cfg[key] == aug[key], key


def test_gpucrop_config_trains_and_resumes_exactly(tmp_path):
    """tools/train.py with the gpucrop config (one training worker: the
    batch crosses processes as the loader hands it over): trains,
    validates, and a run resumed after its first epoch ends with the
    weights of an unbroken one."""
    root = str(tmp_path / 'data')
    make_imagenet(root, num_classes=2, train_per_class=2, val_per_class=1,
                  size=(120, 160))
    unbroken, broken = str(tmp_path / 'unbroken'), str(tmp_path / 'broken')
    log = run_tool('train.py', GPUCROP, '--work-dir', unbroken,
                   '--cfg-options', *tiny_imagenet_options(root, 2, 1))
    assert 'Epoch(train)' in log and 'loss:' in log
    assert 'Epoch(val) [2][1/1]' in log, log[-2000:]
    run_tool('train.py', GPUCROP, '--work-dir', broken, '--cfg-options',
             *tiny_imagenet_options(root, 1, 1))
    log = run_tool('train.py', GPUCROP, '--work-dir', broken, '--resume',
                   '--cfg-options', *tiny_imagenet_options(root, 2, 1))
    assert 'resumed epoch: 1' in log, log[-2000:]
    want, got = (torch.load(osp.join(w, 'epoch_2.pth'),
                            weights_only=True)['state_dict']
                 for w in (unbroken, broken))
    assert want.keys() == got.keys()
    assert all(torch.equal(want[k], got[k]) for k in want)
    # and the first epoch changed the weights (a resume of nothing would
    # pass the comparison above)
    first = torch.load(osp.join(broken, 'epoch_1.pth'),
                       weights_only=True)['state_dict']
    assert not all(torch.equal(first[k], got[k]) for k in got)


def test_train_speed_times_the_workers_and_the_device_parts(tmp_path):
    """train_speed.py on the gpucrop config: the workers' transforms and
    crop_collate per image, then the crops' resize and the augmentation of
    one batch apart (values are measured on a GPU, not here)."""
    out = run_tool(
        'analysis_tools/train_speed.py', GPUCROP, '--data',
        str(tmp_path / 'data'), '--images', '40', '--val-images', '20',
        '--long-side', '72', '96', '--batch', '4', '--size', '64',
        '--transform-images', '8', '--augment-iters', '2', '--parts',
        'transforms', 'gpu-augment')
    assert re.search(r'\[main\] transforms, ms per image on one core: .*'
                     r'RandomResizedCropParams [0-9.]+, RandomFlipParams '
                     r'.*crop_collate \(batches of 4\) [0-9.]+; total', out)
    for part in ("the crops' resize", 'GPU augmentation'):
        assert re.search(rf'\[main\] {part} of a batch of 4: [0-9.]+ ms '
                         r'host', out), out


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_on_cuda_kernels_and_the_side_stream():
    """On a GPU: the compiled kernels give upstream's pixels, and the
    preprocessor on its second stream gives what it gives on one."""
    batch = cuda_test_batch()
    cuda = batch._replace(**{
        k: v.cuda() for k, v in batch._asdict().items()
        if isinstance(v, torch.Tensor)})
    got = resize_crops(cuda).cpu().numpy()
    # the kernels against their own arithmetic in numpy, then that against
    # the machine's Pillow: a kernel error apart from the tables modelling
    # another Pillow than the installed one (as 12.3 before width_first
    # followed the version)
    formula = resize_formula(batch)
    assert differing_crops(got, formula) == [], (
        'the compiled kernels differ from their arithmetic (index, pixels, '
        'max difference)')
    assert differing_crops(formula, resize_crops(
        batch, kernels=False).numpy()) == [], (
            f'Pillow {PIL.__version__} resizes otherwise than the tables '
            '(made for it: crop_batch.width_first) say')

    upstream, ours = samples(n=16, erasing=dict(ERASING, erase_prob=0.5))
    data = crop_collate(ours)
    pre = MODELS.build(dict(
        type='GPUAugClsDataPreprocessor', num_classes=10,
        batch_augments=dict(augments=[dict(type='AsyncMixup', alpha=0.8)])))
    pre.cuda()
    outs = []
    recorded = []
    record_stream = torch.Tensor.record_stream

    def recording(tensor, stream):
        # a plain function, bound as a method (mock's autospec of the C
        # method would drop the tensor)
        recorded.append(tensor.untyped_storage().data_ptr())
        return record_stream(tensor, stream)

    for side_stream in (False, True, True):
        pre.side_stream = side_stream
        torch.manual_seed(0)
        np.random.seed(0)
        with mock.patch.object(torch.Tensor, 'record_stream', recording):
            outs.append(pre(copy.deepcopy(data), True))
    # each block once: the batch, its labels and scores (the samples' are
    # views of these), in each of the two side-stream runs
    assert sorted(recorded) == sorted(
        t.untyped_storage().data_ptr() for out in outs[1:]
        for t in (out['inputs'], out['data_samples'][0].gt_label,
                  out['data_samples'][0].gt_score))
    for out in outs[1:]:
        assert torch.equal(out['inputs'], outs[0]['inputs'])
        for a, b in zip(out['data_samples'], outs[0]['data_samples']):
            assert torch.equal(a.gt_score, b.gt_score)

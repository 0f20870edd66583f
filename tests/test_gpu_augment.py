# Copyright (c) mmsmlp contributors. All rights reserved.
"""The GPU augmentation path (configs/gpuaug/*_gpuaug.py) computes what the
CPU pipeline computes: the workers draw upstream's RandAugment and
RandomErasing parameters with upstream's random calls, and the data
preprocessor applies them (run here on CPU tensors) as mmcv does."""
import copy
import os.path as osp
import re
from unittest import mock

import cv2
import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpretrain.datasets.transforms import RandAugment, RandomErasing
from mmpretrain.datasets.transforms.auto_augment import RANDAUG_POLICIES
from mmpretrain.registry import MODELS, TRANSFORMS

from mmsmlp.datasets import make_imagenet
from mmsmlp.datasets.transforms import RandAugmentParams, RandomErasingParams
from mmsmlp.datasets.transforms.gpu_augment import ERASE_MODES, INTERPOLATIONS
from mmsmlp.models.gpu_augment import (GraphedAugment, _apply_groups,
                                       _plan, augment_batch,
                                       draw_group_noise, group_layout,
                                       noise_buffers, padded_plan)
from .conftest import (REPO_ROOT, run_tool, tiny_imagenet_options,
                       upstream_randaug_policies)

GPUAUG = osp.join(REPO_ROOT, 'configs/gpuaug/smlpnet-t_8xb128_in1k_gpuaug.py')
BGR_MEAN = [103.53, 116.28, 123.675]
BGR_STD = [57.375, 57.12, 58.395]
RANDAUG = dict(
    policies='timm_increasing', num_policies=2, total_level=10,
    magnitude_level=9, magnitude_std=0.5,
    hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic'))
ERASING = dict(erase_prob=0.25, mode='rand', min_area_ratio=0.02,
               max_area_ratio=1 / 3, fill_color=BGR_MEAN, fill_std=BGR_STD)
# Rotate/Shear/Translate: grid_sample at exact coordinates vs OpenCV's
# 1/32-pixel grid and 15-bit weights (measured on these images: 99.99% of
# the pixels equal, none off by more than 1 level, mean 1e-4 levels;
# nearest: 2e-5 of Rotate's pixels take the other neighbour at a tie)
GEOMETRIC_MEAN_ABS = 0.05  # levels, mean over the pixels
GEOMETRIC_FRAC_OVER_1 = 0.001  # fraction of pixels off by more than 1 level


def photo(seed, h=224, w=224):
    """A decoded JPEG (BGR, as mmcv loads): gradients, discs, noise."""
    r = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * r.uniform(0.2, 1) + yy * r.uniform(0, 1) +
                     r.uniform(0, 80)) % 256 for _ in range(3)], -1)
    for _ in range(6):
        cv2.circle(img, (int(r.integers(0, w)), int(r.integers(0, h))),
                   int(r.integers(5, 60)),
                   [float(v) for v in r.integers(0, 256, 3)], -1)
    img = np.clip(img + r.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def to_batch(imgs):
    return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous()


def to_images(batch):
    return list(batch.permute(0, 2, 3, 1).numpy())


# ---- the drawn parameters are upstream's -------------------------------

SPIED = {  # mmcv function -> the op that calls it
    'imrotate': 'Rotate', 'imshear': 'Shear', 'imtranslate': 'Translate',
    'posterize': 'Posterize', 'solarize': 'Solarize',
    'adjust_color': 'ColorTransform', 'adjust_contrast': 'Contrast',
    'adjust_brightness': 'Brightness', 'adjust_sharpness': 'Sharpness',
    'auto_contrast': 'AutoContrast', 'imequalize': 'Equalize',
    'iminvert': 'Invert'
}


def upstream_applied(transform, img, calls):
    """Run upstream's RandAugment, returning the (op, value) it applied,
    from the mmcv calls it made (and SolarizeAdd's magnitude, which it adds
    with numpy)."""
    calls.clear()
    transform(dict(img=img.copy()))
    return list(calls)


def test_randaug_params_are_what_upstream_applies():
    upstream = RandAugment(**RANDAUG)
    calls = []

    def spy(name, fn):
        def wrapped(img, *args, **kwargs):
            value = (list(args) + list(kwargs.values()) + [0.])[0]
            if name in ('Shear', 'Translate'):
                axis = 'X' if kwargs['direction'] == 'horizontal' else 'Y'
                name_ = name + axis
            else:
                name_ = name
            calls.append((name_, float(value)))
            return fn(img, *args, **kwargs)
        return wrapped

    solarize_add = [t for t in upstream.transforms
                    if type(t).__name__ == 'SolarizeAdd'][0]
    real_magnitude = solarize_add.random_magnitude

    def magnitude():
        value = real_magnitude()
        calls.append(('SolarizeAdd', float(value)))
        return value

    patches = [mock.patch.object(mmcv, fn, spy(op, getattr(mmcv, fn)))
               for fn, op in SPIED.items()]
    patches.append(mock.patch.object(solarize_add, 'random_magnitude',
                                     magnitude))
    params = RandAugmentParams(**RANDAUG)
    img = photo(0, 48, 64)  # H != W: translate offsets use the right side
    from mmsmlp.datasets.transforms.gpu_augment import RANDAUG_OPS
    for p in patches:
        p.start()
    try:
        np.random.seed(0)
        want = [upstream_applied(upstream, img, calls) for _ in range(400)]
        state = np.random.get_state()[1].copy()
    finally:
        for p in patches:
            p.stop()
    np.random.seed(0)
    got = [params(dict(img=img))['randaug_params'] for _ in range(400)]
    # the same numpy stream afterwards
    assert np.array_equal(np.random.get_state()[1], state)

    seen = set()
    for rows, applied in zip(got, want):
        mine = [(RANDAUG_OPS[int(r[0])], r[2]) for r in rows if r[1]]
        theirs = []
        for n, v in applied:
            if n in ('AutoContrast', 'Equalize', 'Invert'):
                v = 0.
            theirs.append((n, v))
        assert [n for n, _ in mine] == [n for n, _ in theirs]
        assert [v for _, v in mine] == pytest.approx(
            [v for _, v in theirs], rel=1e-12, abs=1e-12)
        seen.update((n, np.sign(v)) for n, v in mine)
    # every op drawn, the signed ones with both signs
    assert {n for n, _ in seen} == set(RANDAUG_OPS)
    for n in ('Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY'):
        assert (n, 1.) in seen and (n, -1.) in seen
    for n in ('ColorTransform', 'Contrast', 'Brightness', 'Sharpness'):
        factors = [r[2] for rows in got for r in rows
                   if r[1] and RANDAUG_OPS[int(r[0])] == n]
        assert min(factors) < 1 < max(factors)  # magnitudes of both signs


def test_erasing_params_are_upstream_boxes():
    upstream = RandomErasing(**ERASING)
    params = RandomErasingParams(**ERASING)
    img = photo(1, 48, 64)
    boxes = []
    with mock.patch.object(RandomErasing, '_fill_pixels', autospec=True,
                           side_effect=lambda self, im, *box: boxes.append(
                               box) or im):
        erased = 0
        for seed in range(300):
            boxes.clear()
            np.random.seed(seed)
            upstream(dict(img=img.copy()))
            np.random.seed(seed)
            row = params(dict(img=img))['erase_params']
            if boxes:
                erased += 1
                assert row[0] == 1 and tuple(row[1:5]) == boxes[0]
            else:
                assert row[0] == 0
    assert 40 < erased < 110  # erase_prob 0.25
    assert list(row[5:]) == [2, *BGR_MEAN, *BGR_STD]


def test_unsupported_policy_and_options_are_refused():
    with pytest.raises(ValueError, match='GaussianBlur'):
        RandAugmentParams(
            policies=[dict(type='GaussianBlur', magnitude_range=(0, 1))],
            num_policies=1, magnitude_level=5)
    with pytest.raises(ValueError, match='interpolation'):
        RandAugmentParams(
            policies=[dict(type='Rotate', magnitude_range=(0, 30))],
            num_policies=1, magnitude_level=5,
            hparams=dict(interpolation='lanczos'))
    with pytest.raises(AssertionError, match='mode'):  # upstream's check
        RandomErasingParams(mode='zeros')


# ---- each op applied on the device is upstream's ------------------------

PIXEL_OPS = [p for p in RANDAUG_POLICIES['timm_increasing']
             if p['type'] not in ('Rotate', 'Shear', 'Translate')]
GEOMETRIC = [p for p in RANDAUG_POLICIES['timm_increasing']
             if p['type'] in ('Rotate', 'Shear', 'Translate')]


def one_op_args(policy, interpolation='bicubic'):
    """RandAugment's arguments for ``policy`` alone, always applied."""
    return dict(policies=[dict(policy, prob=1.)], num_policies=1,
                magnitude_level=9, magnitude_std='inf',
                hparams=dict(RANDAUG['hparams'], interpolation=interpolation))


def one_op_rows(policy, seeds, imgs, interpolation='bicubic'):
    """The recorded parameter rows of ``policy`` for each image, drawn from
    numpy seeded with its seed."""
    params = RandAugmentParams(**one_op_args(policy, interpolation))
    rows = []
    for seed, img in zip(seeds, imgs):
        np.random.seed(seed)
        rows.append(params(dict(img=img))['randaug_params'])
    return np.stack(rows)


def one_op(policy, seeds, imgs, interpolation='bicubic'):
    """Upstream's op (always applied) and the device's on the same draws:
    (upstream images, device images, drawn values)."""
    upstream = RandAugment(**one_op_args(policy, interpolation))
    want = []
    for seed, img in zip(seeds, imgs):
        np.random.seed(seed)
        want.append(upstream(dict(img=img.copy()))['img'])
    rows = one_op_rows(policy, seeds, imgs, interpolation)
    got = augment_batch(to_batch(imgs), rows, None)
    return np.stack(want), np.stack(to_images(got)), rows[:, 0, 2]


@pytest.mark.parametrize('policy', PIXEL_OPS, ids=lambda p: p['type'])
def test_pixel_ops_equal_mmcv(policy):
    imgs = [photo(s) for s in range(8)]
    want, got, values = one_op(policy, range(8), imgs)
    assert np.array_equal(got, want)
    assert not np.array_equal(got, np.stack(imgs))  # the op changed them
    if policy['type'] in ('ColorTransform', 'Contrast', 'Brightness',
                          'Sharpness'):  # factors 1 +- magnitude
        assert values.min() < 1 < values.max()


@pytest.mark.parametrize('interpolation', ['bicubic', 'bilinear', 'nearest'])
@pytest.mark.parametrize('policy', GEOMETRIC,
                         ids=lambda p: p['type'] + p.get('direction', ''))
def test_geometric_ops_close_to_cv2(policy, interpolation):
    imgs = [photo(s, 160, 224) for s in range(8)]
    want, got, values = one_op(policy, range(8), imgs, interpolation)
    assert values.min() < 0 < values.max()  # both signs
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.mean() < GEOMETRIC_MEAN_ABS, diff.mean()
    assert (diff > 1).mean() < GEOMETRIC_FRAC_OVER_1, (diff > 1).mean()
    # the border (pad_val, BGR) where the image moved out
    moved = np.abs(got.astype(int) - np.stack(imgs).astype(int)).mean()
    assert moved > 10


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_ops_on_a_gpu_equal_the_cpu_ones():
    """The ops run on CUDA tensors in training; the tests above check them
    on CPU tensors against mmcv. A GPU's float kernels may contract
    multiply-adds differently: the photometric ops must still give the
    same uint8 images, the geometric ones within a level."""
    imgs = [photo(s, 160, 224) for s in range(8)]
    for policy in PIXEL_OPS + GEOMETRIC:
        rows = one_op_rows(policy, range(8), imgs)
        on_cpu = augment_batch(to_batch(imgs), rows, None)
        on_gpu = augment_batch(to_batch(imgs).cuda(), rows, None).cpu()
        diff = (on_gpu.int() - on_cpu.int()).abs()
        if policy in PIXEL_OPS:
            assert diff.max() == 0, policy['type']
        else:
            assert diff.max() <= 1, policy['type']
            assert diff.float().mean() < 0.01, policy['type']


def test_erasing_on_the_device():
    imgs = [photo(s, 96, 128) for s in range(64)]
    rows = []
    params = RandomErasingParams(**dict(ERASING, erase_prob=1.))
    for img in imgs:
        rows.append(params(dict(img=img))['erase_params'])
    rows[3][0] = 0  # one left alone
    torch.manual_seed(0)
    got = to_images(augment_batch(to_batch(imgs), None, np.stack(rows)))
    erased, want = [], []
    for img, out, row in zip(imgs, got, rows):
        top, left, h, w = row[1:5].astype(int)
        outside = np.ones(img.shape[:2], bool)
        if row[0]:
            outside[top:top + h, left:left + w] = False
            erased.append(out[top:top + h, left:left + w].reshape(-1, 3))
            # upstream's fill of the same box, from numpy
            up = RandomErasing(**ERASING)._fill_pixels(
                img.copy(), top, left, h, w)
            want.append(up[top:top + h, left:left + w].reshape(-1, 3))
        assert np.array_equal(out[outside], img[outside])
    assert np.array_equal(got[3], imgs[3])
    erased, want = np.concatenate(erased), np.concatenate(want)
    # the same distribution: clipped, truncated N(fill_color, fill_std)
    assert erased.min() == 0 and erased.max() == 255
    np.testing.assert_allclose(erased.mean(0), want.mean(0), atol=1.)
    np.testing.assert_allclose(erased.std(0), want.std(0), rtol=0.02)
    np.testing.assert_allclose(
        (erased == 0).mean(0), (want == 0).mean(0), atol=0.005)
    # const mode: the uint8 fill colour
    const = RandomErasingParams(erase_prob=1., mode='const',
                                fill_color=BGR_MEAN)
    row = const(dict(img=imgs[0]))['erase_params']
    out = to_images(augment_batch(to_batch(imgs[:1]), None, row[None]))[0]
    top, left, h, w = row[1:5].astype(int)
    up = RandomErasing(erase_prob=1., mode='const',
                       fill_color=BGR_MEAN)._fill_pixels(
                           imgs[0].copy(), top, left, h, w)
    assert np.array_equal(out, up)


def mixed_batch(n=96, h=64, w=96):
    """Images and rows holding every op in both slots, Rotate/Shear/
    Translate in two interpolations, and erasing in all three modes."""
    imgs = [photo(s, h, w) for s in range(n)]
    randaug = RandAugmentParams(**RANDAUG)
    erasing = [RandomErasingParams(**dict(ERASING, erase_prob=0.5)),
               RandomErasingParams(erase_prob=0.5, mode='const',
                                   fill_color=[10, 20, 30]),
               RandomErasingParams(erase_prob=0.5, mode='rand',
                                   fill_std=None)]
    rows, erase_rows = [], []
    for i, img in enumerate(imgs):
        np.random.seed(i)
        rows.append(randaug(dict(img=img))['randaug_params'])
        erase_rows.append(erasing[i % 3](dict(img=img))['erase_params'])
    rows, erase_rows = np.stack(rows), np.stack(erase_rows)
    geometric = np.isin(rows[..., 0], [3, 11, 12, 13, 14]) & (rows[..., 1] > 0)
    for i, slot in np.argwhere(geometric)[::7]:
        rows[i, slot, 4] = INTERPOLATIONS.index('bilinear')
    return to_batch(imgs), rows, erase_rows


def assert_same_images(got, want):
    diff = (got.int() - want.int()).abs()
    images = sorted({int(i) for i in diff.nonzero()[:, 0]})
    assert diff.max() == 0, (f'{int((diff > 0).sum())} pixels of images '
                             f'{images} differ, by up to {int(diff.max())}')


def test_padded_groups_equal_the_grouped_ops():
    """GraphedAugment's form of the groups (fixed capacities, indices padded
    with scratch images, a group the batch does not hold, the erasing
    noise drawn beforehand into buffers), run eagerly: augment_batch's
    images, and the generator advanced alike."""
    x, rows, erase_rows = mixed_batch()
    n, c, h, w = x.shape
    plan = _plan(rows, erase_rows, h, w)
    capacity = {gid: group[2] + 3
                for gid, group in zip(plan.ids, plan.groups)}
    ops = {op for _, op, _ in capacity}
    assert {'warp', 'erase', 'Equalize', 'Sharpness'} <= ops
    assert len({slot for slot, _, _ in capacity}) == 3  # 2 slots, erasing
    assert {dict(k)['mode'] for _, op, k in capacity if op == 'erase'} == set(
        ERASE_MODES)
    capacity[(1, 'warp', (('mode', 'nearest'), ))] = 4  # not in the batch
    layout, num_ints, num_floats, scratch = group_layout(capacity)
    ints, floats = padded_plan(plan, layout, n)
    assert len(ints) == num_ints and len(floats) == num_floats
    assert ints.max() == n + scratch - 1
    noise = noise_buffers(layout, (c, h, w), 'cpu')
    assert sorted(dict(kwargs)['mode']
                  for _, _, kwargs in noise) == ['normal', 'uniform']
    x_ext = torch.cat([x.float(), torch.zeros(scratch, *x.shape[1:])])
    for seed in range(2):  # as replays: the scratch images kept between them
        torch.manual_seed(seed)
        want = augment_batch(x, rows, erase_rows)
        after = torch.get_rng_state()
        assert not torch.equal(want, x)
        torch.manual_seed(seed)
        x_ext[:n] = x
        draw_group_noise(plan, noise)
        _apply_groups(x_ext, torch.from_numpy(ints),
                      torch.from_numpy(floats),
                      [group for _, group in layout])
        assert_same_images(x_ext[:n].to(torch.uint8), want)
        assert torch.equal(torch.get_rng_state(), after)
        assert x_ext.isfinite().all()
    # the noise differs between the seeds
    torch.manual_seed(2)
    assert not torch.equal(augment_batch(x, rows, erase_rows), want)


def test_graphed_augment_off_cuda_is_the_grouped_ops():
    x, rows, erase_rows = mixed_batch(n=8)
    graphed = GraphedAugment()
    torch.manual_seed(0)
    got = graphed(x, rows, erase_rows)
    torch.manual_seed(0)
    assert torch.equal(got, augment_batch(x, rows, erase_rows))
    assert graphed.graph is None
    with pytest.raises(ValueError, match='erase_params'):
        graphed(x, rows, erase_rows[:3])
    # an EMA's deep copy of the model gets no graph
    assert copy.deepcopy(graphed).capacity == {}


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_graphed_augment_on_cuda():
    """Replays give the grouped ops' images, the erasing noise included,
    and advance the generator as they do; a batch with a larger group
    captures again."""
    x, rows, erase_rows = mixed_batch()
    x = x.cuda()
    graphed = GraphedAugment()

    def both(inputs, randaug, seed):
        torch.manual_seed(seed)
        want = augment_batch(inputs, randaug, erase_rows)
        after = torch.cuda.get_rng_state()
        torch.manual_seed(seed)
        got = graphed(inputs, randaug, erase_rows)
        assert torch.equal(torch.cuda.get_rng_state(), after)
        assert_same_images(got, want)
        return got

    first = both(x, rows, 0)  # captured and replayed
    assert torch.equal(both(x, rows, 0), first)  # replayed
    assert graphed.captures == 1 and graphed.replays == 2
    assert not torch.equal(both(x, rows, 1), first)  # other noise
    # another batch of the same groups: a replay
    both(x.flip(3).contiguous(), rows, 2)
    assert graphed.captures == 1
    # every image Inverted in slot 0: over the capacity, captured again
    more = rows.copy()
    more[:, 0, :2] = [2, 1]  # Invert, applied
    both(x, more, 3)
    assert graphed.captures == 2
    assert torch.equal(both(x, rows, 0), first)


# ---- the pipeline and the preprocessor end to end -----------------------

def cpu_and_gpu_pipelines(erasing):
    head = [dict(type='RandomResizedCrop', scale=64, backend='pillow',
                 interpolation='bicubic'),
            dict(type='RandomFlip', prob=0.5, direction='horizontal')]
    pack = dict(type='PackInputs')
    cpu = head + [dict(type='RandAugment', **RANDAUG),
                  dict(type='RandomErasing', **erasing), pack]
    gpu = head + [
        dict(type='RandAugmentParams', **RANDAUG),
        dict(type='RandomErasingParams', **erasing),
        dict(pack, meta_keys=('flip', 'randaug_params', 'erase_params'))
    ]
    from mmcv.transforms import Compose
    return (Compose([TRANSFORMS.build(t) for t in cpu]),
            Compose([TRANSFORMS.build(t) for t in gpu]))


def batches(erasing, n=16):
    cpu, gpu = cpu_and_gpu_pipelines(erasing)
    cpu_out, gpu_out = [], []
    for i in range(n):
        img = photo(100 + i, 90, 120)
        np.random.seed(i)  # the same draws for both pipelines
        cpu_out.append(cpu(dict(img=img.copy(), gt_label=i % 10)))
        np.random.seed(i)
        gpu_out.append(gpu(dict(img=img.copy(), gt_label=i % 10)))
    collate = lambda out: dict(  # noqa: E731
        inputs=torch.stack([o['inputs'] for o in out]),
        data_samples=[o['data_samples'] for o in out])
    return collate(cpu_out), collate(gpu_out)


def preprocessors(**kwargs):
    cfg = dict(num_classes=10, mean=[123.675, 116.28, 103.53],
               std=[58.395, 57.12, 57.375], to_rgb=True, **kwargs)
    return (MODELS.build(dict(cfg, type='GPUAugClsDataPreprocessor')),
            MODELS.build(dict(cfg, type='BatchedClsDataPreprocessor')))


def test_preprocessor_equals_the_cpu_pipeline():
    # a constant erasing fill (std 0): the same pixels on both paths
    cpu, gpu = batches(dict(ERASING, erase_prob=0.5, fill_std=0.))
    assert any(s.erase_params[0] for s in gpu['data_samples'])
    assert any(r[1] for s in gpu['data_samples']
               for r in s.randaug_params)
    ours, parent = preprocessors()
    got = ours(copy.deepcopy(gpu), True)
    want = parent(copy.deepcopy(cpu), True)
    # in uint8 levels (std ~ 58 per level of normalised output)
    diff = (got['inputs'] - want['inputs']).abs() * 58.
    assert diff.mean() < GEOMETRIC_MEAN_ABS
    assert (diff > 1.5).float().mean() < GEOMETRIC_FRAC_OVER_1
    assert not torch.equal(got['inputs'],
                           parent(copy.deepcopy(gpu), True)['inputs'])
    # the images with no geometric op applied: exactly
    geometric = [3, 11, 12, 13, 14]
    exact = [i for i, s in enumerate(gpu['data_samples'])
             if not any(r[1] and int(r[0]) in geometric
                        for r in s.randaug_params)]
    assert exact and torch.equal(got['inputs'][exact],
                                 want['inputs'][exact])
    for a, b in zip(got['data_samples'], want['data_samples']):
        assert torch.equal(a.gt_label, b.gt_label)


def test_augmentation_ignores_the_training_steps_autocast():
    """mmengine's BaseModel.train_step calls the data preprocessor inside
    the optimizer wrapper's autocast: in bf16, Sharpness's convolution and
    the warps' affine_grid would change the images (by up to 88 levels on
    224x224 crops); the augmentation runs in float32 regardless."""
    _, gpu = batches(dict(ERASING, erase_prob=0.5, fill_std=0.))
    ours, _ = preprocessors()
    want = ours(copy.deepcopy(gpu), True)['inputs']
    with torch.autocast('cpu', dtype=torch.bfloat16):
        got = ours(copy.deepcopy(gpu), True)['inputs']
    assert torch.equal(got, want)


def test_eval_and_batches_without_params_are_the_parents():
    _, gpu = batches(ERASING, n=4)
    ours, parent = preprocessors()
    for training in (False, ):
        got, want = ours(copy.deepcopy(gpu), training), parent(
            copy.deepcopy(gpu), training)
        assert torch.equal(got['inputs'], want['inputs'])
    cpu, _ = batches(ERASING, n=4)
    got, want = ours(copy.deepcopy(cpu), True), parent(copy.deepcopy(cpu),
                                                        True)
    assert torch.equal(got['inputs'], want['inputs'])
    # a batch mixing samples with and without parameters is an error
    mixed = copy.deepcopy(gpu)
    mixed['data_samples'][1] = cpu['data_samples'][1]
    with pytest.raises(ValueError, match='randaug_params'):
        ours(mixed, True)


def test_mixup_cutmix_and_labels_are_the_parents():
    # no erasing: no noise drawn, torch's generator is Mixup/CutMix's alone
    _, gpu = batches(dict(ERASING, erase_prob=0.), n=8)
    augments = dict(augments=[dict(type='Mixup', alpha=0.8),
                              dict(type='CutMix', alpha=1.0)])
    ours, parent = preprocessors(batch_augments=augments)
    augmented = dict(gpu, inputs=ours.augment(gpu['inputs'],
                                              gpu['data_samples']))
    for seed in range(4):
        torch.manual_seed(seed)
        np.random.seed(seed)  # Mixup/CutMix draw from numpy and torch
        got = ours(copy.deepcopy(gpu), True)
        torch.manual_seed(seed)
        np.random.seed(seed)
        want = parent(copy.deepcopy(augmented), True)
        assert torch.equal(got['inputs'], want['inputs'])
        for a, b in zip(got['data_samples'], want['data_samples']):
            assert torch.equal(a.gt_score, b.gt_score)
            assert torch.equal(a.gt_label, b.gt_label)
        assert any(a.gt_score.max() < 1 for a in got['data_samples'])


# ---- the config ---------------------------------------------------------

@pytest.mark.parametrize('arch', ['s', 'b'])
def test_gpuaug_configs_of_s_and_b(arch):
    """-s and -b: the T gpuaug config's data path, their own model."""
    cfg = Config.fromfile(GPUAUG.replace('-t_', f'-{arch}_'))
    t = Config.fromfile(GPUAUG)
    base = Config.fromfile(osp.join(
        REPO_ROOT, f'configs/smlpnet/smlpnet-{arch}_8xb128_in1k.py'))
    assert cfg.model == base.model
    assert cfg.train_dataloader == t.train_dataloader
    assert cfg.data_preprocessor == t.data_preprocessor
    for key in ('val_dataloader', 'optim_wrapper', 'param_scheduler',
                'custom_hooks', 'train_cfg', 'randomness'):
        assert cfg[key] == base[key], key


def test_gpuaug_config_trains_through_the_runner(tmp_path):
    config = GPUAUG
    cfg = Config.fromfile(config)
    types = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert 'RandAugmentParams' in types and 'RandomErasingParams' in types
    assert 'RandAugment' not in types and 'RandomErasing' not in types
    assert cfg.data_preprocessor.type == 'GPUAugClsDataPreprocessor'
    base = Config.fromfile(
        osp.join(REPO_ROOT, 'configs/smlpnet/smlpnet-t_8xb128_in1k.py'))
    assert cfg.val_dataloader == base.val_dataloader
    assert cfg.model == base.model

    root = str(tmp_path / 'data')
    make_imagenet(root, num_classes=2, train_per_class=2, val_per_class=1,
                  size=(120, 160))
    work_dir = str(tmp_path / 'work')
    log = run_tool('train.py', config, '--work-dir', work_dir,
                   '--cfg-options', *tiny_imagenet_options(root))
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
    assert 'Epoch(train)' in log and 'loss:' in log
    assert re.search(r'Epoch\(val\) \[1\]\[1/1\]\s+accuracy/top1: ',
                     log), log[-2000:]


def test_train_speed_times_the_cpu_part_and_the_gpu_augmentation(tmp_path):
    """train_speed.py on the gpuaug config: the per-image cost of the
    workers' transforms (the *Params ones) and the preprocessor's
    augmentation of one batch (values are measured on a GPU, not here)."""
    out = run_tool(
        'analysis_tools/train_speed.py', GPUAUG, '--data',
        str(tmp_path / 'data'), '--images', '40', '--val-images', '20',
        '--long-side', '72', '96', '--batch', '4', '--size', '64',
        '--transform-images', '4', '--augment-iters', '2', '--parts',
        'transforms', 'gpu-augment')
    assert re.search(r'\[main\] transforms, ms per image on one core: .*'
                     r'RandAugmentParams [0-9.]+, RandomErasingParams', out)
    assert re.search(r'\[main\] GPU augmentation of a batch of 4: [0-9.]+ '
                     r'ms host', out), out


def test_gpuaug_pipeline_is_the_recipes_with_two_steps_swapped():
    """The gpuaug config restates the base's training pipeline (mmengine's
    inheritance replaces lists whole): every step and argument but the two
    moved to the GPU and the packed meta keys must stay the recipe's."""
    cfg = Config.fromfile(GPUAUG)
    base = Config.fromfile(
        osp.join(REPO_ROOT, 'configs/smlpnet/smlpnet-t_8xb128_in1k.py'))
    ours = [dict(t) for t in cfg.train_dataloader.dataset.pipeline]
    theirs = [dict(t) for t in base.train_dataloader.dataset.pipeline]
    swapped = {'RandAugmentParams': 'RandAugment',
               'RandomErasingParams': 'RandomErasing'}
    for step in ours:
        step['type'] = swapped.get(step['type'], step['type'])
    # the base's RandAugment lists 'timm_increasing' with two ops computed
    # through lookup tables (the same images, tests/test_lookup_ops.py);
    # the GPU applies upstream's ops by name
    for step in theirs:
        if step['type'] == 'RandAugment':
            assert upstream_randaug_policies(step['policies']) == \
                RANDAUG_POLICIES['timm_increasing']
            step['policies'] = 'timm_increasing'
    assert ours[-1].pop('meta_keys')[-2:] == ('randaug_params',
                                              'erase_params')
    assert ours == theirs

# Copyright (c) mmsmlp contributors. All rights reserved.
"""LUTAutoContrast / LUTEqualize give mmpretrain's AutoContrast / Equalize
images pixel for pixel, with the same random draws."""
import cv2
import mmcv
import numpy as np
import pytest
from mmpretrain.datasets.transforms import (AutoContrast, Equalize,
                                            RandAugment)
from mmpretrain.datasets.transforms.auto_augment import RANDAUG_POLICIES
from mmengine.config import Config

from mmsmlp.datasets.transforms import LUTAutoContrast, LUTEqualize
from mmsmlp.datasets.transforms.lookup_ops import auto_contrast, equalize
from .conftest import REPO_ROOT, upstream_randaug_policies


def images():
    """Decoded JPEGs of smooth noise and the edge cases: a constant
    channel, two values, the full range, one bright pixel, a flipped view
    (negative strides, as RandomFlip leaves it), a crop (a strided view)."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(40):
        h, w = rng.integers(20, 90, 2)
        small = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
        img = cv2.resize(small, (int(w), int(h)),
                         interpolation=cv2.INTER_CUBIC)
        img = np.clip(img + rng.normal(0, 3 + i, img.shape), 0, 255)
        ok, buf = cv2.imencode('.jpg', img.astype(np.uint8))
        out.append(cv2.imdecode(buf, cv2.IMREAD_COLOR))
    const = out[0].copy()
    const[..., 1] = 77
    two = np.where(rng.random((30, 40, 3)) < 0.5, 10, 200).astype(np.uint8)
    full = rng.integers(0, 256, (50, 60, 3), dtype=np.uint8)
    bright = np.full((16, 16, 3), 3, np.uint8)
    bright[5, 7] = 250
    narrow = rng.integers(100, 104, (33, 31, 3), dtype=np.uint8)
    return out + [const, two, full, bright, narrow, out[1][:, ::-1],
                  out[2][3:40:2, 5:60]]


@pytest.mark.parametrize('fast, reference', [
    (auto_contrast, mmcv.auto_contrast),
    (equalize, mmcv.imequalize),
])
def test_lookup_ops_equal_mmcv(fast, reference):
    for i, img in enumerate(images()):
        got = fast(img)
        assert got.dtype == np.uint8 and got.shape == img.shape
        np.testing.assert_array_equal(got, reference(img), err_msg=str(i))


@pytest.mark.parametrize('ours, upstream', [(LUTAutoContrast, AutoContrast),
                                            (LUTEqualize, Equalize)])
def test_lookup_transforms_equal_upstream(ours, upstream):
    """The same draws of ``prob`` and the same images; an image that is not
    uint8 with 3 channels takes upstream's code."""
    for prob in (0.5, 1.0):
        fast, slow = ours(prob=prob), upstream(prob=prob)
        for seed, img in enumerate(images()):
            results = []
            for t in (fast, slow):
                np.random.seed(seed)
                results.append(t(dict(img=img.copy()))['img'])
                results.append(np.random.random())  # the stream after it
            np.testing.assert_array_equal(results[0], results[2])
            assert results[1] == results[3]
    img = np.concatenate([images()[0], images()[0][:, :, :1]], 2)  # BGRA
    np.testing.assert_array_equal(
        ours(prob=1.)(dict(img=img))['img'],
        upstream(prob=1.)(dict(img=img))['img'])


def test_config_randaugment_is_timm_increasing_with_lookup_ops(monkeypatch):
    """The ImageNet configs' RandAugment: mmpretrain's 'timm_increasing'
    list with the two ops swapped, so the same images for the same seed
    (the lookup ops among those applied)."""
    from mmsmlp.datasets.transforms import lookup_ops
    calls = []
    for name in ('auto_contrast', 'equalize'):
        fn = getattr(lookup_ops, name)
        monkeypatch.setattr(
            lookup_ops, name,
            lambda img, fn=fn, name=name: calls.append(name) or fn(img))
    cfg = Config.fromfile(f'{REPO_ROOT}/configs/smlpnet/'
                          'smlpnet-t_8xb128_in1k.py')
    randaug = [t for t in cfg.train_pipeline if t['type'] == 'RandAugment']
    assert len(randaug) == 1
    randaug = dict(randaug[0])
    assert upstream_randaug_policies(randaug['policies']) == \
        RANDAUG_POLICIES['timm_increasing']
    assert {p['type'] for p in randaug['policies']} >= {
        'LUTAutoContrast', 'LUTEqualize'}
    randaug.pop('type')
    ours = RandAugment(**randaug)
    upstream = RandAugment(**dict(randaug, policies='timm_increasing'))
    pool = images()
    for seed in range(200):
        img = pool[seed % len(pool)]
        out = []
        for t in (ours, upstream):
            np.random.seed(seed)
            out.append(t(dict(img=img.copy(), img_shape=img.shape[:2]))['img'])
        np.testing.assert_array_equal(out[0], out[1], err_msg=str(seed))
    assert calls.count('auto_contrast') >= 5 and calls.count('equalize') >= 5

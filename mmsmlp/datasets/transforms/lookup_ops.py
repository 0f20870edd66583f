# Copyright (c) mmsmlp contributors. All rights reserved.
"""mmpretrain's ``AutoContrast`` and ``Equalize`` RandAugment ops through
uint8 lookup tables: the same random draws and the same output images.

mmcv computes both per channel with ``np.histogram`` (a float binning of
the whole channel) and a float64 or int64 table indexed by the image,
cast back to uint8 at the end: about 3.3 ms per 224x224 image on one core
of the development machine, against 0.05-1.7 ms for the other ops. In the
ImageNet recipe (2 ops per image, each applied with probability 0.5, drawn
from 15) they made over a third of RandAugment's cost in the data
workers, which bound training on a 16-core GPU machine; with the lookup
tables RandAugment costs about a quarter less (docs/benchmarks.md). Here the
histogram is a count per value (the same counts: each of the 256 bins of
``np.histogram(channel, 256, (0, 255))`` holds exactly one uint8 value),
mmcv's table is built as mmcv builds it and cast to uint8 before the
lookup instead of after it (the same truncation of the same values), and
``cv2.LUT`` applies the three channels' tables in one pass.
tests/test_lookup_ops.py checks the images against mmcv's, pixel for pixel.

Images that are not uint8 with 3 channels take upstream's code.
"""
import cv2
import numpy as np
from mmpretrain.datasets.transforms import AutoContrast, Equalize
from mmpretrain.registry import TRANSFORMS


def _histograms(img: np.ndarray) -> list:
    """Per channel, the int64 count of each value 0-255 of a uint8 image."""
    return [
        np.bincount(img[..., c].ravel(), minlength=256)
        for c in range(img.shape[2])
    ]


def _apply(img: np.ndarray, tables: list) -> np.ndarray:
    lut = np.stack(tables, axis=-1).astype(np.uint8).reshape(256, 1, 3)
    return cv2.LUT(np.ascontiguousarray(img), lut)


def auto_contrast(img: np.ndarray) -> np.ndarray:
    """``mmcv.auto_contrast(img)`` (cutoff 0) of a uint8 (H, W, 3) image."""
    tables = []
    for hist in _histograms(img):
        nonzero = np.flatnonzero(hist)
        low, high = nonzero[0], nonzero[-1]
        if low >= high:  # one value: the channel as it is
            tables.append(np.arange(256))
            continue
        scale = 255.0 / (high - low)
        offset = -low * scale
        # mmcv's float64 table; the truncation its final astype does
        tables.append(np.clip(np.arange(256) * scale + offset, 0, 255))
    return _apply(img, tables)


def equalize(img: np.ndarray) -> np.ndarray:
    """``mmcv.imequalize(img)`` of a uint8 (H, W, 3) image."""
    tables = []
    for hist in _histograms(img):
        nonzero = hist[hist > 0]
        step = (np.sum(nonzero) - nonzero[-1]) // 255
        if not step:  # the channel as it is
            tables.append(np.arange(256))
            continue
        lut = (np.cumsum(hist) + (step // 2)) // step
        lut = np.concatenate([[0], lut[:-1]], 0)
        tables.append(np.minimum(lut, 255))
    return _apply(img, tables)


def _fits(img) -> bool:
    return (isinstance(img, np.ndarray) and img.dtype == np.uint8
            and img.ndim == 3 and img.shape[2] == 3)


class _LookupTransform:
    """``transform`` of an mmpretrain op whose image ``lookup`` computes:
    the op's own draw of ``prob``, then the image; upstream's code for an
    image that does not fit."""

    def transform(self, results):
        if not _fits(results['img']):
            return super().transform(results)
        if self.random_disable():
            return results
        results['img'] = self.lookup(results['img'])
        return results


@TRANSFORMS.register_module()
class LUTAutoContrast(_LookupTransform, AutoContrast):
    """mmpretrain's :class:`AutoContrast` (same arguments, same random
    draw, same output), computed through lookup tables."""

    def lookup(self, img: np.ndarray) -> np.ndarray:
        return auto_contrast(img)


@TRANSFORMS.register_module()
class LUTEqualize(_LookupTransform, Equalize):
    """mmpretrain's :class:`Equalize` (same arguments, same random draw,
    same output), computed through lookup tables."""

    def lookup(self, img: np.ndarray) -> np.ndarray:
        return equalize(img)

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Batches of crops that the device resizes: the collate function of the
GPU crop path and Pillow's resampling tables.

:class:`~mmsmlp.datasets.transforms.RandomResizedCropParams` leaves each
training image as its crop (any size; ``ResizeEdgeParams`` leaves a
validation image whole) and :func:`crop_collate` packs a
batch of them into one :class:`CropBatch`: the crops' pixels in one flat
uint8 tensor (one shared-memory block per batch for the loader to hand
over) and, per image, Pillow's resampling tables for both axes, computed
here in the data workers. :func:`mmsmlp.models.gpu_crop.resize_crops`
resizes them on the device with Pillow's integer arithmetic: the pixels of
upstream's ``RandomResizedCrop(backend='pillow')`` (or ``ResizeEdge`` +
``CenterCrop``), bit for bit.

Pillow (``Image.resize``, libImaging/Resample.c, read in Pillow 12.3 and
13.0; tests/test_gpu_crop.py compares with the installed Pillow) resizes in
two passes, one per axis, each a convolution with
per-output-pixel weights in 22-bit fixed point, rounded and clipped to
uint8 after each pass. The weights are the same in 12.x and 13.0; the order
of the passes is not (:func:`width_first`, chosen by the installed Pillow).
"""
import functools
import re
from typing import NamedTuple, Optional, Sequence

import numpy as np
import PIL
import torch
from mmengine.dataset import default_collate
from mmengine.registry import FUNCTIONS

PRECISION_BITS = 22  # Pillow's for 8-bit images: 32 - 8 - 2


def _bicubic(x: np.ndarray) -> np.ndarray:
    # Pillow's bicubic_filter (a = -0.5), in its order of operations
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _bilinear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


# Pillow's filters and their supports, by mmcv's interpolation names
FILTERS = {'bicubic': (_bicubic, 2.0), 'bilinear': (_bilinear, 1.0)}


@functools.lru_cache(maxsize=8192)
def _table(in_size: int, out_size: int, interpolation: str) -> tuple:
    """Pillow's table for one length: ``(bounds (out, 2), weights (out,
    K))`` (crop sizes repeat: a worker computes each once)."""
    fn, support = FILTERS[interpolation]
    scale = in_size / float(out_size)
    filterscale = max(scale, 1.0)
    support = support * filterscale
    ksize = int(np.ceil(support)) * 2 + 1
    center = (np.arange(out_size) + 0.5) * scale
    # C's (int) truncates; negative starts are clipped to 0 anyway
    first = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    last = np.minimum(np.trunc(center + support + 0.5), in_size)
    count = last.astype(np.int64) - first
    taps = np.arange(ksize)
    w = fn(((first[:, None] + taps) - center[:, None] + 0.5) *
           (1.0 / filterscale))
    w = np.where(taps < count[:, None], w, 0.0)
    total = np.cumsum(w, axis=1)[:, -1]  # summed in Pillow's order
    w /= np.where(total == 0.0, 1.0, total)[:, None]
    scaled = w * (1 << PRECISION_BITS)
    fixed = np.trunc(np.where(w < 0, -0.5 + scaled, 0.5 + scaled))
    return (np.stack([first, count], -1).astype(np.int32),
            fixed.astype(np.int32))


def pillow_coefficients(in_sizes: Sequence[int], out_sizes: Sequence[int],
                        interpolation: str, starts: Sequence[int],
                        length: int) -> tuple:
    """Pillow's resampling tables for resizing lengths ``in_sizes`` to
    ``out_sizes`` (``precompute_coeffs`` + ``normalize_coeffs_8bpc``, in
    float64 in their order of operations, so the same doubles and the same
    fixed-point weights): the rows of output pixels ``starts`` to
    ``starts + length`` (a window of each resized length).

    Returns ``bounds`` int32 ``(N, length, 2)``: the first input pixel and
    the number of pixels of each output pixel's window; ``weights`` int32
    ``(N, length, K)``: the window's weights, zero beyond its length (``K``
    the batch's largest window).
    """
    if interpolation not in FILTERS:
        raise ValueError(f'pillow_coefficients: interpolation must be one of '
                         f'{tuple(FILTERS)}, got {interpolation!r}')
    tables = [
        _table(int(n), int(out), interpolation)
        for n, out in zip(in_sizes, out_sizes)
    ]
    k_max = max(w.shape[1] for _, w in tables)
    bounds = np.zeros((len(tables), length, 2), dtype=np.int32)
    weights = np.zeros((len(tables), length, k_max), dtype=np.int32)
    for i, ((b, w), start) in enumerate(zip(tables, starts)):
        bounds[i] = b[start:start + length]
        weights[i, :, :w.shape[1]] = w[start:start + length]
    return bounds, weights


def _version(text: str) -> tuple:
    return tuple(map(int, re.match(r'(\d+)\.(\d+)', text).groups()))


PILLOW_VERSION = _version(PIL.__version__)  # the installed one, once


def width_first(height: np.ndarray, width: np.ndarray, out_h: int,
                out_w: int, pillow: Optional[str] = None) -> np.ndarray:
    """Whether Pillow (``pillow``, a version; by default the installed one)
    resizes along the width first. Pillow 13.0 (ImagingResampleInner):
    unless the height shrinks by more than twice the width's pixels; 12.2
    and 12.3 (``Image.resize``): unless the image is over 100 times taller
    than wide and its height shrinks; earlier (read in 12.1.1): always."""
    version = PILLOW_VERSION if pillow is None else _version(pillow)
    dh = height - out_h
    if version >= (13, 0):
        return ~((dh > 0) & (dh > (width - out_w) * 2))
    if version >= (12, 2):
        return ~((dh > 0) & (height > width * 100))
    return np.ones_like(dh, dtype=bool)


class CropBatch(NamedTuple):
    """A batch of crops to resize and maybe flip, into ``out_h x out_w``
    images: each crop resized to its ``targets`` size, of which the output
    is the window at ``windows`` (the whole resized crop when the two sizes
    are equal, as for RandomResizedCrop; a centre crop for validation).

    Tensors (per image ``n``): ``pixels`` uint8, the crops in
    :class:`PackInputs`' layout ``(3, h, w)`` one after another;
    ``sizes`` int64 ``(N, 2)``, each crop's height and width; ``targets``
    and ``windows`` int64 ``(N, 2)``: the height and width it is resized
    to, and the top and left of the output in it; ``offsets`` int64
    ``(N, 3)``: where its crop starts in ``pixels``, its intermediate
    (after the first pass) in a scratch buffer, and its output; ``order``
    int64 ``(N,)``: the images resized along the width first
    (``num_width_first`` of them, Pillow's order), then the others;
    ``flip`` uint8 ``(N,)``: horizontal flip after the resize; ``w_bounds``
    / ``w_weights`` and ``h_bounds`` / ``h_weights``: the tables of
    :func:`pillow_coefficients` along the width and the height, for the
    output's pixels. Host values: the output size, the interpolation, and
    for the device's launch grids the scratch buffer's size and the largest
    lengths of each pass.
    """
    pixels: torch.Tensor
    sizes: torch.Tensor
    targets: torch.Tensor
    windows: torch.Tensor
    offsets: torch.Tensor
    order: torch.Tensor
    flip: torch.Tensor
    w_bounds: torch.Tensor
    w_weights: torch.Tensor
    h_bounds: torch.Tensor
    h_weights: torch.Tensor
    out_h: int
    out_w: int
    interpolation: str
    num_width_first: int
    scratch_size: int
    max_height: int  # of the crops resized along the width first
    max_width: int  # of the crops resized along the height first


def make_crop_batch(crops: Sequence[torch.Tensor],
                    out_size: tuple,
                    flips: Sequence[bool],
                    interpolation: str = 'bicubic',
                    targets: Sequence[tuple] = None,
                    windows: Sequence[tuple] = None) -> CropBatch:
    """A :class:`CropBatch` of uint8 ``(3, h, w)`` crops resized with
    Pillow's ``interpolation`` to ``targets`` (``(h, w)`` each; by default
    ``out_size``), of which the ``out_size`` windows at ``windows`` (``(top,
    left)`` each; by default ``(0, 0)``) are the output."""
    out_h, out_w = out_size
    shapes = [tuple(c.shape) for c in crops]
    if any(len(s) != 3 or s[0] != 3 for s in shapes):
        raise ValueError('make_crop_batch: the crops must be 3-channel '
                         f'(3, h, w) images, got shapes {shapes}')
    n = len(crops)
    sizes = np.array([s[1:] for s in shapes], dtype=np.int64)
    targets = np.array([out_size] * n if targets is None else targets,
                       dtype=np.int64).reshape(n, 2)
    windows = np.array([(0, 0)] * n if windows is None else windows,
                       dtype=np.int64).reshape(n, 2)
    if ((windows < 0).any() or (windows + out_size > targets).any()):
        raise ValueError(
            f'make_crop_batch: the {out_h}x{out_w} windows at {windows} '
            f'must lie inside the resized sizes {targets}')
    h, w = sizes[:, 0], sizes[:, 1]
    first = width_first(h, w, targets[:, 0], targets[:, 1])
    numel = 3 * h * w
    scratch = 3 * np.where(first, h * out_w, out_h * w)
    offsets = np.stack([
        np.cumsum(numel) - numel,
        np.cumsum(scratch) - scratch,
        np.arange(n) * (3 * out_h * out_w)
    ], 1)
    w_bounds, w_weights = pillow_coefficients(w, targets[:, 1], interpolation,
                                              windows[:, 1], out_w)
    h_bounds, h_weights = pillow_coefficients(h, targets[:, 0], interpolation,
                                              windows[:, 0], out_h)
    pixels = None
    if torch.utils.data.get_worker_info() is not None:
        # in a data worker, straight into shared memory (as torch's
        # default_collate stacks), not copied there when sent
        storage = crops[0]._typed_storage()._new_shared(int(numel.sum()))
        pixels = crops[0].new(storage)
    return CropBatch(
        pixels=torch.cat([c.reshape(-1) for c in crops], out=pixels),
        sizes=torch.from_numpy(sizes),
        targets=torch.from_numpy(targets),
        windows=torch.from_numpy(windows),
        offsets=torch.from_numpy(offsets),
        order=torch.from_numpy(
            np.concatenate([np.flatnonzero(first),
                            np.flatnonzero(~first)])),
        flip=torch.tensor([bool(f) for f in flips], dtype=torch.uint8),
        w_bounds=torch.from_numpy(w_bounds),
        w_weights=torch.from_numpy(w_weights),
        h_bounds=torch.from_numpy(h_bounds),
        h_weights=torch.from_numpy(h_weights),
        out_h=int(out_h),
        out_w=int(out_w),
        interpolation=interpolation,
        num_width_first=int(first.sum()),
        scratch_size=int(scratch.sum()),
        max_height=int(h[first].max(initial=0)),
        max_width=int(w[~first].max(initial=0)))


def pending_crop_batch(crops: Sequence[torch.Tensor],
                       samples: Sequence) -> CropBatch:
    """The :class:`CropBatch` of ``crops`` (uint8 ``(3, h, w)``) whose data
    samples record a pending resize (``crop_resize``), and maybe an output
    window (``crop_window``) and a flip (``crop_flip``)."""
    if not all(s.get('crop_resize') is not None for s in samples):
        raise ValueError(
            'crop batch: some samples of the batch have no crop_resize in '
            'their metainfo (pack it with PackInputs meta_keys)')
    interpolations = {s.crop_resize[2] for s in samples}
    # the output: a window (CenterCropParams) or the whole resized crop
    outputs = {
        tuple(s.crop_window[2:]) if s.get('crop_window') is not None else
        tuple(s.crop_resize[:2])
        for s in samples
    }
    if len(interpolations) != 1 or len(outputs) != 1:
        raise ValueError(
            'crop batch: the samples of a batch must be resized alike into '
            f'one size, got {sorted(interpolations)} into {sorted(outputs)}')
    return make_crop_batch(
        crops,
        outputs.pop(), [bool(s.get('crop_flip', False)) for s in samples],
        interpolations.pop(),
        targets=[tuple(s.crop_resize[:2]) for s in samples],
        windows=[
            tuple(s.crop_window[:2])
            if s.get('crop_window') is not None else (0, 0) for s in samples
        ])


@FUNCTIONS.register_module()
def crop_collate(data_batch: Sequence[dict]) -> dict:
    """mmengine's ``default_collate`` for batches whose images are crops
    still to be resized (``RandomResizedCropParams`` and
    ``RandomFlipParams``, or ``ResizeEdgeParams`` and ``CenterCropParams``,
    in the pipeline): ``inputs`` becomes a :class:`CropBatch` with the
    flips, output windows and Pillow's tables; the data samples are
    collated as ``default_collate`` does. Batches of images without a
    pending resize are ``default_collate``'s."""
    samples = [s['data_samples'] for s in data_batch]
    if not any(s.get('crop_resize') is not None for s in samples):
        return default_collate(data_batch)
    inputs = pending_crop_batch([s['inputs'] for s in data_batch], samples)
    samples = default_collate([{'data_samples': s} for s in samples])
    return {'inputs': inputs, **samples}

# Copyright (c) mmsmlp contributors. All rights reserved.
"""RandAugment's ops and RandomErasing on a batch of images on the device,
with mmcv's CPU semantics (the ``cv2`` backend, mmcv's default).

Every function takes ``x``: a float tensor ``(N, C, H, W)`` holding uint8
values (0-255 integers) in the channel order the CPU pipeline has (mmcv
decodes BGR), and per-image parameters as ``(N,)`` tensors on its device;
it returns the images as upstream's op would leave them (uint8 values:
rounded, truncated and clipped as mmcv does), reading no value back.

Exact (the uint8 values of mmcv on x86, tests/test_gpu_augment.py):
``invert``, ``posterize``, ``solarize``, ``solarize_add``, ``brightness``,
``contrast``, ``equalize``, ``auto_contrast``, ``sharpness``, ``color``.
``warp`` (Rotate, Shear, Translate) samples with ``grid_sample`` at exact
coordinates where ``cv2.warpAffine`` quantizes them to 1/32 pixel and its
bicubic weights to 15 bits: on decoded JPEGs about 1 pixel in 10^4 differs,
by one level.

:func:`augment_batch` applies the rows recorded by
:class:`~mmsmlp.datasets.transforms.RandAugmentParams` and
:class:`~mmsmlp.datasets.transforms.RandomErasingParams` to a batch.
"""
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

from mmsmlp.datasets.transforms.gpu_augment import (ERASE_MODES, ERASE_ROW,
                                                    GEOMETRIC_OPS,
                                                    INTERPOLATIONS, OP_CODE,
                                                    RANDAUG_OPS, RANDAUG_ROW)

# cv2.cvtColor(BGR2GRAY) on uint8: fixed point, 15 bits (OpenCV's
# RGB2Gray<uchar>: B2Y, G2Y, R2Y = 3735, 19235, 9798)
_GRAY_BGR = (3735., 19235., 9798.)


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.view(-1, 1, 1, 1)


def _truncate(x: torch.Tensor) -> torch.Tensor:
    """numpy's ``clip(x, 0, 255).astype(uint8)``."""
    return x.clamp(0, 255).floor()


def _round(x: torch.Tensor) -> torch.Tensor:
    """OpenCV's ``saturate_cast<uchar>`` of a float (round half to even)."""
    return x.round().clamp(0, 255)


def bgr_to_gray(x: torch.Tensor) -> torch.Tensor:
    """``cv2.cvtColor(img, COLOR_BGR2GRAY)`` of uint8 BGR images:
    ``(N, 1, H, W)``. Exact: the integer sums stay below 2**24."""
    b, g, r = x.unbind(1)
    gray = b * _GRAY_BGR[0] + g * _GRAY_BGR[1] + r * _GRAY_BGR[2] + 16384.
    return torch.div(gray, 32768., rounding_mode='floor').unsqueeze(1)


def invert(x: torch.Tensor) -> torch.Tensor:
    """``mmcv.iminvert``."""
    return 255. - x


def posterize(x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """``mmcv.posterize`` with ``step = 2 ** (8 - bits)`` (256: all zero)."""
    step = _per_image(step)
    return torch.div(x, step, rounding_mode='floor') * step


def solarize(x: torch.Tensor, thr: torch.Tensor) -> torch.Tensor:
    """``mmcv.solarize`` with ``thr`` rounded up to an integer (the same
    comparison for uint8 values)."""
    return torch.where(x < _per_image(thr), x, 255. - x)


def solarize_add(x: torch.Tensor, add: torch.Tensor,
                 thr: torch.Tensor) -> torch.Tensor:
    """mmpretrain's ``SolarizeAdd``: ``min(img + add, 255)`` truncated where
    ``img < thr``; pass ``floor(add)`` (>= 0) and ``ceil(thr)``."""
    added = (x + _per_image(add)).clamp(max=255.)
    return torch.where(x < _per_image(thr), added, x)


def _add_weighted(x, other, factor):
    """``cv2.addWeighted(x, f, other, 1 - f, 0)`` before its cast, as OpenCV
    computes it on x86 (float32 weights, ``fma(x, f, other * (1 - f))``;
    the fused multiply-add emulated in float64). ``factor``: float64."""
    alpha = _per_image(factor.float()).double()
    beta = _per_image((1. - factor).float())
    return (x.double() * alpha + (other * beta).double()).float()


def brightness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``mmcv.adjust_brightness`` (cv2 backend): float32, truncated."""
    return _truncate(x * _per_image(factor.float()))


def contrast(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``mmcv.adjust_contrast`` (cv2 backend): float32 blend with the
    rounded mean of the grey image, truncated."""
    gray = bgr_to_gray(x)
    mean = gray.double().mean(dim=(1, 2, 3), keepdim=True).round().float()
    return _truncate(_add_weighted(x, mean, factor))


def color(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``mmcv.adjust_color`` (cv2 backend): ``cv2.addWeighted`` of the uint8
    image and its grey image, rounded."""
    return _round(_add_weighted(x, bgr_to_gray(x), factor))


def sharpness(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """``mmcv.adjust_sharpness``: a float32 blend, truncated, with
    ``cv2.filter2D`` of the SMOOTH kernel (PIL's ``ImageFilter.SMOOTH``,
    1 around 5, / 13; uint8 output, borders reflected as OpenCV's default
    BORDER_REFLECT_101)."""
    # (the 3x3 sum + 4 x centre) / 13: integer sums, so the quotient is
    # never within float error of a rounding tie (k / 13 is never n + 0.5)
    channels = x.shape[1]
    ones = x.new_ones(channels, 1, 3, 3)  # made on the device: no copy
    box = F.conv2d(F.pad(x, (1, 1, 1, 1), mode='reflect'), ones,
                   groups=channels)
    smooth = _round((box + 4. * x) / 13.)
    return _truncate(_add_weighted(x, smooth, factor))


def equalize(x: torch.Tensor) -> torch.Tensor:
    """``mmcv.imequalize``: per channel, a lookup table from the cumulative
    histogram (PIL's ``ImageOps.equalize``), integer arithmetic."""
    n, c, h, w = x.shape
    pixels = x.view(n * c, h * w).long()
    hist = torch.zeros(n * c, 256, dtype=torch.long, device=x.device)
    hist.scatter_add_(1, pixels, torch.ones_like(pixels))
    # step: the pixels that are not of the channel's highest value, / 255
    top_count = hist.gather(1, pixels.amax(1, keepdim=True))
    step = (h * w - top_count) // 255
    lut = (hist.cumsum(1) + step // 2) // step.clamp(min=1)
    lut = torch.cat([lut.new_zeros(n * c, 1), lut[:, :-1]], 1).clamp(max=255)
    out = torch.where(step == 0, pixels, lut.gather(1, pixels))
    return out.view(n, c, h, w).to(x.dtype)


def auto_contrast(x: torch.Tensor) -> torch.Tensor:
    """``mmcv.auto_contrast`` (cutoff 0): each channel's range stretched to
    0-255 in float64 as mmcv's lookup table, truncated."""
    low = x.amin(dim=(2, 3), keepdim=True).double()
    high = x.amax(dim=(2, 3), keepdim=True).double()
    # a true division (torch's `255. / t` multiplies by a reciprocal)
    scale = torch.full_like(low, 255.) / (high - low).clamp(min=1.)
    offset = -low * scale
    out = (x.double() * scale + offset).clamp(0, 255).floor().to(x.dtype)
    return torch.where(high > low, out, x)


def warp(x: torch.Tensor, theta: torch.Tensor, pad: torch.Tensor,
         mode: str = 'bicubic') -> torch.Tensor:
    """``cv2.warpAffine`` with a constant border, for a batch.

    ``theta`` ``(N, 2, 3)`` maps each output pixel's normalised coordinates
    to the input's (``F.affine_grid`` with ``align_corners=True``: -1 and 1
    are the centres of the first and last pixels, OpenCV's convention of
    pixel centres at integers). ``pad`` ``(N, C)`` is the border value. The
    images are sampled minus their border value with zero padding, plus it:
    each interpolation tap outside the image reads the border value, as
    OpenCV's BORDER_CONSTANT. Rounded and clipped to uint8 values.
    """
    pad = pad.view(*pad.shape, 1, 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    out = F.grid_sample(
        x - pad, grid, mode=mode, padding_mode='zeros', align_corners=True)
    return _round(out + pad)


def erase(x: torch.Tensor, box: torch.Tensor, fill: torch.Tensor,
          std: torch.Tensor, mode: str) -> torch.Tensor:
    """mmpretrain's ``RandomErasing`` fill of the ``(N, 4)`` boxes (top,
    left, height, width): with ``mode`` 'const' the ``(N, C)`` ``fill``
    (already uint8 values); 'uniform', uniform integers in 0-255; 'normal',
    ``N(fill, std)`` per pixel, truncated to integers and clipped to 0-255.
    The noise is drawn from torch's generator of the images' device."""
    n, c, h, w = x.shape
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    top, left, bh, bw = (v.view(n, 1, 1) for v in box.unbind(1))
    inside = ((rows >= top) & (rows < top + bh) & (cols >= left) &
              (cols < left + bw)).unsqueeze(1)
    fill = fill.view(n, c, 1, 1)
    if mode == 'const':
        value = fill
    elif mode == 'uniform':  # np.random.uniform(0, 256).astype(uint8)
        value = torch.rand_like(x).mul_(256.).floor_().clamp_(max=255.)
    elif mode == 'normal':  # np.clip(normal().astype(int32), 0, 255)
        value = torch.randn_like(x).mul_(std.view(n, c, 1, 1)).add_(fill)
        value = value.trunc_().clamp_(0, 255)
    else:
        raise ValueError(f'erase: mode must be "const", "uniform" or '
                         f'"normal", got {mode!r}')
    return torch.where(inside, value, x)


def _forward_matrices(rows: np.ndarray, h: int, w: int) -> np.ndarray:
    """The ``(K, 3, 3)`` pixel matrices mmcv hands ``cv2.warpAffine`` for
    RandAugment rows of geometric ops (Shear and Translate: float32, as
    mmcv builds them; Rotate: ``cv2.getRotationMatrix2D`` about the image
    centre with the angle negated, in float64)."""
    codes, value, aux = rows[:, 0].astype(int), rows[:, 2], rows[:, 3]
    mat = np.tile(np.eye(3), (len(rows), 1, 1))
    v32 = value.astype(np.float32).astype(np.float64)
    for name, (i, j) in (('ShearX', (0, 1)), ('ShearY', (1, 0)),
                         ('TranslateX', (0, 2)), ('TranslateY', (1, 2))):
        sel = codes == OP_CODE[name]
        mat[sel, i, j] = v32[sel]
    sel = codes == OP_CODE['Rotate']
    theta = np.deg2rad(-value[sel])
    alpha, beta = aux[sel] * np.cos(theta), aux[sel] * np.sin(theta)
    cx, cy = (w - 1) * 0.5, (h - 1) * 0.5
    mat[sel, 0, :] = np.stack(
        [alpha, beta, (1 - alpha) * cx - beta * cy], -1)
    mat[sel, 1, :] = np.stack(
        [-beta, alpha, beta * cx + (1 - alpha) * cy], -1)
    return mat


def warp_thetas(rows: np.ndarray, h: int, w: int) -> np.ndarray:
    """``F.affine_grid``'s ``(K, 2, 3)`` matrices (``align_corners=True``)
    for RandAugment rows of geometric ops on ``h`` x ``w`` images: the
    inverse of mmcv's pixel matrix (as ``cv2.warpAffine`` inverts it), in
    normalised coordinates."""
    to_pixel = np.array([[(w - 1) / 2, 0, (w - 1) / 2],
                         [0, (h - 1) / 2, (h - 1) / 2], [0, 0, 1]])
    inverse = np.linalg.inv(_forward_matrices(rows, h, w))
    return (np.linalg.inv(to_pixel) @ inverse @ to_pixel)[:, :2]


class _Plan:
    """Host-side lists of the groups to run, their image indices and their
    parameters, copied to the device in one int64 and one float64 copy."""

    def __init__(self):
        self.groups, self.ints, self.floats = [], [], []
        self.num_ints = self.num_floats = 0

    def add(self, op, idx, values=None, **kwargs):
        values = np.zeros((len(idx), 0)) if values is None else values
        self.groups.append((op, self.num_ints, len(idx), self.num_floats,
                            values.shape[1:], kwargs))
        self.ints.append(idx)
        self.floats.append(values.reshape(-1))
        self.num_ints += len(idx)
        self.num_floats += values.size

    def to(self, device):
        ints = torch.from_numpy(np.concatenate(self.ints).astype(np.int64))
        floats = torch.from_numpy(
            np.concatenate(self.floats).astype(np.float64))
        if device.type == 'cuda':  # asynchronous copies
            ints, floats = ints.pin_memory(), floats.pin_memory()
        return (ints.to(device, non_blocking=True),
                floats.to(device, non_blocking=True))


def _plan(randaug, erase, h, w) -> _Plan:
    plan = _Plan()
    geometric = [OP_CODE[name] for name in GEOMETRIC_OPS]
    for slot in range(0 if randaug is None else randaug.shape[1]):
        rows = randaug[:, slot]
        codes = rows[:, 0].astype(int)
        applied = rows[:, 1] > 0
        is_geo = applied & np.isin(codes, geometric)
        for interp in np.unique(rows[is_geo, 4]).astype(int):
            idx = np.flatnonzero(is_geo & (rows[:, 4] == interp))
            values = np.concatenate([
                warp_thetas(rows[idx], h, w).reshape(-1, 6), rows[idx, 5:8]
            ], 1)
            plan.add('warp', idx, values, mode=INTERPOLATIONS[interp])
        for code in np.unique(codes[applied & ~is_geo]):
            name = RANDAUG_OPS[code]
            idx = np.flatnonzero(applied & (codes == code))
            value, aux = rows[idx, 2], rows[idx, 3]
            if name == 'Posterize':
                values = 2.**(8 - value)  # the floor-division step
            elif name == 'Solarize':
                values = np.ceil(value)
            elif name == 'SolarizeAdd':
                values = np.stack([np.floor(value), np.ceil(aux)], 1)
            elif name in ('AutoContrast', 'Equalize', 'Invert'):
                values = None
            else:
                values = value  # a blending factor
            if values is not None and values.ndim == 1:
                values = values[:, None]
            plan.add(name, idx, values)
    if erase is not None:
        erased = erase[:, 0] > 0
        for code, mode in enumerate(ERASE_MODES):
            idx = np.flatnonzero(erased & (erase[:, 5] == code))
            if len(idx):
                plan.add('erase', idx, erase[idx][:, [1, 2, 3, 4, 6, 7, 8,
                                                      9, 10, 11]],
                         mode=mode)
    return plan


def _run(op: str, x: torch.Tensor, v64: torch.Tensor, v: torch.Tensor,
         **kwargs):
    """One op on a group; its parameters in float64 (``v64``, the blending
    factors use it) and float32 (``v``)."""
    if op == 'warp':
        return warp(x, v[:, :6].view(-1, 2, 3), v[:, 6:], **kwargs)
    if op == 'erase':
        return erase(x, v[:, :4], v[:, 4:7], v[:, 7:], **kwargs)
    simple = {'AutoContrast': auto_contrast, 'Equalize': equalize,
              'Invert': invert}
    if op in simple:
        return simple[op](x)
    if op == 'SolarizeAdd':
        return solarize_add(x, v[:, 0], v[:, 1])
    if op in ('Posterize', 'Solarize'):
        return {'Posterize': posterize, 'Solarize': solarize}[op](x, v[:, 0])
    blends = {'ColorTransform': color, 'Contrast': contrast,
              'Brightness': brightness, 'Sharpness': sharpness}
    return blends[op](x, v64[:, 0])


def augment_batch(inputs: torch.Tensor, randaug: Optional[np.ndarray],
                  erase: Optional[np.ndarray]) -> torch.Tensor:
    """Apply recorded RandAugment rows ``(N, num_policies, 8)`` (slot by
    slot) and RandomErasing rows ``(N, 12)`` (see
    :mod:`mmsmlp.datasets.transforms.gpu_augment`) to the uint8 batch
    ``inputs`` ``(N, C, H, W)``; either may be None. Returns a uint8 batch.
    """
    if inputs.dim() != 4 or inputs.shape[1] != 3:
        raise ValueError('augment_batch: inputs must be (N, 3, H, W) images, '
                         f'got shape {tuple(inputs.shape)}')
    n, _, h, w = inputs.shape
    for name, rows, width in (('randaug_params', randaug, RANDAUG_ROW),
                              ('erase_params', erase, ERASE_ROW)):
        if rows is not None and (rows.shape[0] != n
                                 or rows.shape[-1] != width):
            raise ValueError(f'augment_batch: {name} must have {width} '
                             f'columns and one row set per image, got '
                             f'shape {rows.shape} for {n} images')
    plan = _plan(randaug, erase, h, w)
    if not plan.groups:
        return inputs
    ints, floats = plan.to(inputs.device)
    floats32 = floats.float()
    x = inputs.float()
    for op, i0, k, f0, shape, kwargs in plan.groups:
        idx = ints[i0:i0 + k]
        f1 = f0 + k * int(np.prod(shape))
        out = _run(op, x.index_select(0, idx), floats[f0:f1].view(k, *shape),
                   floats32[f0:f1].view(k, *shape), **kwargs)
        x.index_copy_(0, idx, out.to(x.dtype))
    return x.to(inputs.dtype)

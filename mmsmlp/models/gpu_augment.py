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


def erase(x: torch.Tensor,
          box: torch.Tensor,
          fill: torch.Tensor,
          std: torch.Tensor,
          mode: str,
          noise: Optional[torch.Tensor] = None) -> torch.Tensor:
    """mmpretrain's ``RandomErasing`` fill of the ``(N, 4)`` boxes (top,
    left, height, width): with ``mode`` 'const' the ``(N, C)`` ``fill``
    (already uint8 values); 'uniform', uniform integers in 0-255; 'normal',
    ``N(fill, std)`` per pixel, truncated to integers and clipped to 0-255.
    The noise (:func:`draw_noise`) is drawn from torch's generator of the
    images' device, or given as ``noise`` (``x``'s shape; not modified)."""
    n, c, h, w = x.shape
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    top, left, bh, bw = (v.view(n, 1, 1) for v in box.unbind(1))
    inside = ((rows >= top) & (rows < top + bh) & (cols >= left) &
              (cols < left + bw)).unsqueeze(1)
    fill = fill.view(n, c, 1, 1)
    if mode == 'const':
        value = fill
    elif mode in RANDOM_FILLS:
        if noise is None:
            noise = draw_noise(torch.empty_like(x), mode)
        if mode == 'uniform':  # np.random.uniform(0, 256).astype(uint8)
            value = noise.mul(256.).floor_().clamp_(max=255.)
        else:  # np.clip(normal().astype(int32), 0, 255)
            value = noise.mul(std.view(n, c, 1, 1)).add_(fill)
            value = value.trunc_().clamp_(0, 255)
    else:
        raise ValueError(f'erase: mode must be "const", "uniform" or '
                         f'"normal", got {mode!r}')
    return torch.where(inside, value, x)


# the erasing modes that draw noise
RANDOM_FILLS = ('uniform', 'normal')


def draw_noise(out: torch.Tensor, mode: str) -> torch.Tensor:
    """``out`` filled with :func:`erase`'s noise for ``mode``: uniform in
    [0, 1) or standard normal (the draws of ``torch.rand_like`` and
    ``torch.randn_like``)."""
    return out.uniform_() if mode == 'uniform' else out.normal_()


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
        # each group's id: (RandAugment slot (the erasing: inf), op,
        # kwargs), the key of its capacity in GraphedAugment
        self.ids = []
        self.slot = 0
        self.num_ints = self.num_floats = 0

    def add(self, op, idx, values=None, **kwargs):
        values = np.zeros((len(idx), 0)) if values is None else values
        self.ids.append((self.slot, op, tuple(sorted(kwargs.items()))))
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
        plan.slot = slot
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
        plan.slot = float('inf')
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


def _check(inputs, randaug, erase) -> None:
    if inputs.dim() != 4 or inputs.shape[1] != 3:
        raise ValueError('augment_batch: inputs must be (N, 3, H, W) images, '
                         f'got shape {tuple(inputs.shape)}')
    n = inputs.shape[0]
    for name, rows, width in (('randaug_params', randaug, RANDAUG_ROW),
                              ('erase_params', erase, ERASE_ROW)):
        if rows is not None and (rows.shape[0] != n
                                 or rows.shape[-1] != width):
            raise ValueError(f'augment_batch: {name} must have {width} '
                             f'columns and one row set per image, got '
                             f'shape {rows.shape} for {n} images')


def augment_batch(inputs: torch.Tensor, randaug: Optional[np.ndarray],
                  erase: Optional[np.ndarray]) -> torch.Tensor:
    """Apply recorded RandAugment rows ``(N, num_policies, 8)`` (slot by
    slot) and RandomErasing rows ``(N, 12)`` (see
    :mod:`mmsmlp.datasets.transforms.gpu_augment`) to the uint8 batch
    ``inputs`` ``(N, C, H, W)``; either may be None. Returns a uint8 batch.
    """
    _check(inputs, randaug, erase)
    _, _, h, w = inputs.shape
    plan = _plan(randaug, erase, h, w)
    if not plan.groups:
        return inputs
    ints, floats = plan.to(inputs.device)
    x = inputs.float()
    _apply_groups(x, ints, floats, plan.groups)
    return x.to(inputs.dtype)


def _apply_groups(x, ints, floats, groups) -> None:
    """Each group's op on its images of ``x`` (in place)."""
    floats32 = floats.float()
    for op, i0, k, f0, shape, kwargs in groups:
        idx = ints[i0:i0 + k]
        f1 = f0 + k * int(np.prod(shape))
        out = _run(op, x.index_select(0, idx), floats[f0:f1].view(k, *shape),
                   floats32[f0:f1].view(k, *shape), **kwargs)
        x.index_copy_(0, idx, out.to(x.dtype))


# --- the grouped ops as a CUDA graph ---------------------------------------
# augment_batch issues about 300 small kernels a batch, and the host
# issuing them bounds it (6-10 ms of host time on an H100, the kernels
# themselves about 2.4 ms). A graph needs fixed shapes, so each group (a
# slot's op, the erasing's mode) gets a fixed capacity, its image indices
# padded with scratch images after the batch's: the same ops on the same
# images, plus some on scratch images nobody reads. (One graph over the
# whole batch, every image through every op as the identity where it drew
# another, took 11 ms of device time on an H100: slower end to end.)


class GraphedAugment:
    """:func:`augment_batch` on CUDA, replayed as a CUDA graph of its
    groups at fixed capacities: the same images, RandomErasing's noise
    included (drawn before each replay as augment_batch draws it, into the
    first rows of each group's noise buffer; the graph itself draws
    nothing, so the generator advances as with augment_batch, and a resumed
    run repeats an unbroken one). A capacity is twice the group's first
    count plus 8 (rounded up to 8, at most the batch); a batch with a group
    over its capacity, or a group not seen before, captures again with the
    capacities grown (a few times early in a run: an op a batch happened
    not to draw), as does a batch of another shape. One graph is kept. CPU
    tensors run :func:`augment_batch`."""

    def __init__(self):
        self.capacity = {}  # group id: capacity
        self.graph = None
        self.captures = 0
        self.replays = 0

    def __deepcopy__(self, memo):  # graphs are not copied (an EMA model)
        return GraphedAugment()

    def __call__(self, inputs: torch.Tensor, randaug: Optional[np.ndarray],
                 erase: Optional[np.ndarray]) -> torch.Tensor:
        if not inputs.is_cuda or torch.cuda.is_current_stream_capturing():
            return augment_batch(inputs, randaug, erase)
        _check(inputs, randaug, erase)
        _, _, h, w = inputs.shape
        plan = _plan(randaug, erase, h, w)
        if not plan.groups:
            return inputs
        counts = {gid: g[2] for gid, g in zip(plan.ids, plan.groups)}
        key = (tuple(inputs.shape), inputs.dtype, inputs.device)
        if (self.graph is None or self.graph['key'] != key or any(
                k > self.capacity.get(gid, -1) for gid, k in counts.items())):
            n = inputs.shape[0]
            for gid, k in counts.items():
                grown = min(n, -(-(2 * k + 8) // 8) * 8)
                self.capacity[gid] = max(self.capacity.get(gid, 0), grown)
            self._capture(inputs, key, plan)
        graph = self.graph
        ints, floats = padded_plan(plan, graph['layout'], inputs.shape[0])
        graph['x'][:inputs.shape[0]].copy_(inputs)
        _copy_from_host(graph['ints'], ints)
        _copy_from_host(graph['floats'], floats)
        draw_group_noise(plan, graph['noise'])
        graph['graph'].replay()
        self.replays += 1
        return graph['out'].clone()

    def _capture(self, inputs: torch.Tensor, key: tuple,
                 plan: _Plan) -> None:
        if self.graph is not None:  # its last replay done, its memory back
            torch.cuda.current_stream(inputs.device).synchronize()
            self.graph = None
        n, c, h, w = inputs.shape
        device = inputs.device
        layout, num_ints, num_floats, scratch = group_layout(self.capacity)
        x = torch.zeros(n + scratch, c, h, w, dtype=torch.float32,
                        device=device)
        ints = torch.zeros(num_ints, dtype=torch.long, device=device)
        floats = torch.zeros(num_floats, dtype=torch.float64, device=device)
        noise = noise_buffers(layout, (c, h, w), device)
        groups = [group for _, group in layout]
        x[:n].copy_(inputs)
        plan_ints, plan_floats = padded_plan(plan, layout, n)
        ints.copy_(torch.from_numpy(plan_ints))
        floats.copy_(torch.from_numpy(plan_floats))
        # a warm-up (cuDNN's choice of convolution, lazy initialisations)
        # on a side stream, then the capture
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            _apply_groups(x.clone(), ints, floats, groups)
        torch.cuda.current_stream(device).wait_stream(stream)
        cuda_graph = torch.cuda.CUDAGraph()
        # thread_local: the loader's pin-memory thread may call CUDA
        with torch.cuda.graph(cuda_graph, capture_error_mode='thread_local'):
            _apply_groups(x, ints, floats, groups)
            out = x[:n].to(inputs.dtype)
        self.graph = dict(key=key, layout=layout, x=x, ints=ints,
                          floats=floats, noise=noise, out=out,
                          graph=cuda_graph)
        self.captures += 1


# the padding value of each group's op (0 for the others)
_PAD = dict(Posterize=1.)
# the float64 values per image of each group's op (_plan's order)
_VALUES = dict(warp=9, erase=10, Posterize=1, Solarize=1, SolarizeAdd=2,
               ColorTransform=1, Contrast=1, Brightness=1, Sharpness=1)


def group_layout(capacity: dict):
    """The graph's groups at their capacities, in the order augment_batch
    applies them (by slot; within one, any order: its groups are disjoint):
    ``[(group id, (op, index offset, capacity, value offset, value shape,
    kwargs))]``, the numbers of indices and values, the scratch images
    needed."""
    layout, i0, f0 = [], 0, 0
    for gid in sorted(capacity):
        _, op, kwargs = gid
        cap, width = capacity[gid], _VALUES.get(op, 0)
        layout.append((gid, (op, i0, cap, f0, (width, ), dict(kwargs))))
        i0, f0 = i0 + cap, f0 + cap * width
    return layout, i0, f0, max(capacity.values())


def padded_plan(plan: _Plan, layout: list, n: int):
    """The plan's indices and values laid out at the graph's capacities:
    padding indices n, n + 1, ... (scratch images), padding values 0."""
    by_id = {gid: i for i, gid in enumerate(plan.ids)}
    counts = {gid: plan.groups[i][2] for gid, i in by_id.items()}
    plan_ints, plan_floats = np.concatenate(plan.ints), np.concatenate(
        plan.floats)
    ints, floats = [], []
    for gid, (op, _, cap, _, (width, ), _) in layout:
        i = by_id.get(gid)
        k = counts.get(gid, 0)
        idx = np.arange(n, n + cap)
        # neutral values for the scratch images: no NaN (Posterize's step 0
        # would give one, and a NaN level breaks a later Equalize's table)
        values = np.full((cap, width), _PAD.get(op, 0.))
        if i is not None:
            _, i0, _, f0, shape, _ = plan.groups[i]
            idx[:k] = plan_ints[i0:i0 + k]
            values[:k] = plan_floats[f0:f0 + k * width].reshape(k, width)
        ints.append(idx)
        floats.append(values.reshape(-1))
    return np.concatenate(ints), np.concatenate(floats)


def noise_buffers(layout: list, image_shape: tuple, device) -> dict:
    """A zeroed noise buffer of each erasing group's capacity whose mode
    draws noise, put in the group's arguments (``noise``): ``{group id:
    buffer}``."""
    buffers = {}
    for gid, (op, _, cap, _, _, kwargs) in layout:
        if op == 'erase' and kwargs['mode'] in RANDOM_FILLS:
            buffers[gid] = kwargs['noise'] = torch.zeros(
                cap, *image_shape, dtype=torch.float32, device=device)
    return buffers


def draw_group_noise(plan: _Plan, buffers: dict) -> None:
    """The plan's erasing noise, drawn into the first rows of each group's
    buffer in augment_batch's order and sizes (the same numbers)."""
    for gid, (op, _, k, _, _, kwargs) in zip(plan.ids, plan.groups):
        if op == 'erase' and kwargs['mode'] in RANDOM_FILLS:
            draw_noise(buffers[gid][:k], kwargs['mode'])


def _copy_from_host(dst: torch.Tensor, array: np.ndarray) -> None:
    """An asynchronous copy of a host array (through pinned memory)."""
    src = torch.from_numpy(np.ascontiguousarray(array)).to(dst.dtype)
    dst.copy_(src.pin_memory(), non_blocking=True)

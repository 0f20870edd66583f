# Copyright (c) mmsmlp contributors. All rights reserved.
"""The device half of the GPU crop path: a :class:`CropBatch`'s crops
resized (and flipped) as upstream's ``RandomResizedCrop(backend='pillow')``
and ``RandomFlip`` (or ``ResizeEdge`` and ``CenterCrop``, for validation)
would have in the data workers, bit for bit.

The plain form is upstream's own call, ``mmcv.imresize(crop, size,
interpolation, backend='pillow')`` image by image, then the flip: it runs
for CPU tensors. On CUDA two Triton kernels run Pillow's two passes with
Pillow's integer arithmetic (the tables of
:func:`mmsmlp.datasets.crop_batch.pillow_coefficients`: 22-bit weights, a
rounding offset, an arithmetic shift and a clip to uint8 after each pass),
each image in Pillow's order of the passes, only the output window's
pixels, the flip written by the last pass: a batch of crops in four
launches instead of 128 Pillow calls of about 1.2 ms of one core each in
the workers. Tests compare the kernels (under Triton's interpreter) with
the plain form.
"""
import mmcv
import numpy as np
import torch

from mmsmlp.datasets.crop_batch import PRECISION_BITS, CropBatch
from .utils.triton_utils import tl, triton

if triton is not None:
    _BITS = tl.constexpr(PRECISION_BITS)
    _HALF = tl.constexpr(1 << (PRECISION_BITS - 1))  # the rounding offset

    @triton.jit
    def _clip8(acc):
        # Pillow's clip8: the sum's integer part (an arithmetic shift),
        # clipped to 0-255
        acc = acc >> _BITS
        return tl.minimum(tl.maximum(acc, 0), 255).to(tl.uint8)

    @triton.jit
    def _resize_width(src, dst, images, sizes, offsets, bounds, weights,
                      flip, OUT, ROWS_OUT, K, FINAL: tl.constexpr,
                      BLOCK_R: tl.constexpr, BLOCK_X: tl.constexpr):
        # Rows of image images[pid 0], channel pid 1, resampled from the
        # crop's width to OUT: the first pass of a width-first image (its
        # crop's rows into the scratch buffer), or the last pass of a
        # height-first one (ROWS_OUT rows of the scratch buffer into the
        # output, flipped if asked).
        n = tl.load(images + tl.program_id(0))
        c = tl.program_id(1)
        width = tl.load(sizes + 2 * n + 1)
        if FINAL:
            rows = ROWS_OUT
            src_base = tl.load(offsets + 3 * n + 1)
            dst_base = tl.load(offsets + 3 * n + 2)
        else:
            rows = tl.load(sizes + 2 * n).to(tl.int32)
            src_base = tl.load(offsets + 3 * n)
            dst_base = tl.load(offsets + 3 * n + 1)
        r = tl.program_id(2) * BLOCK_R + tl.arange(0, BLOCK_R)
        x = tl.arange(0, BLOCK_X)
        r_mask, x_mask = r < rows, x < OUT
        first = tl.load(bounds + (n * OUT + x) * 2, mask=x_mask, other=0)
        count = tl.load(bounds + (n * OUT + x) * 2 + 1, mask=x_mask, other=0)
        line = (c * rows + r).to(tl.int64)
        src_rows = src + src_base + line * width
        acc = tl.full((BLOCK_R, BLOCK_X), _HALF, tl.int32)
        for k in range(0, K):
            mask = x_mask & (k < count)
            w = tl.load(weights + (n * OUT + x) * K + k, mask=mask, other=0)
            v = tl.load(src_rows[:, None] + (first + k)[None, :],
                        mask=r_mask[:, None] & mask[None, :], other=0)
            acc += v.to(tl.int32) * w[None, :]
        if FINAL:
            x = tl.where(tl.load(flip + n) != 0, OUT - 1 - x, x)
        tl.store(dst + dst_base + line[:, None] * OUT + x[None, :],
                 _clip8(acc), mask=r_mask[:, None] & x_mask[None, :])

    @triton.jit
    def _resize_height(src, dst, images, sizes, offsets, bounds, weights,
                       flip, OUT, LINE_OUT, K, FINAL: tl.constexpr,
                       BLOCK_Y: tl.constexpr, BLOCK_X: tl.constexpr):
        # Columns pid 2's block of image images[pid 0], channel and output
        # row block pid 1, resampled from the crop's height to OUT: the
        # first pass of a height-first image (the crop into the scratch
        # buffer), or the last pass of a width-first one (LINE_OUT columns of
        # the scratch buffer into the output, flipped if asked).
        n = tl.load(images + tl.program_id(0))
        blocks = tl.cdiv(OUT, BLOCK_Y)
        c = tl.program_id(1) // blocks
        height = tl.load(sizes + 2 * n)
        if FINAL:
            line = LINE_OUT
            src_base = tl.load(offsets + 3 * n + 1)
            dst_base = tl.load(offsets + 3 * n + 2)
        else:
            line = tl.load(sizes + 2 * n + 1).to(tl.int32)
            src_base = tl.load(offsets + 3 * n)
            dst_base = tl.load(offsets + 3 * n + 1)
        y = (tl.program_id(1) % blocks) * BLOCK_Y + tl.arange(0, BLOCK_Y)
        x = tl.program_id(2) * BLOCK_X + tl.arange(0, BLOCK_X)
        y_mask, x_mask = y < OUT, x < line
        first = tl.load(bounds + (n * OUT + y) * 2, mask=y_mask, other=0)
        count = tl.load(bounds + (n * OUT + y) * 2 + 1, mask=y_mask, other=0)
        plane = src + src_base + c * height * line
        acc = tl.full((BLOCK_Y, BLOCK_X), _HALF, tl.int32)
        for k in range(0, K):
            mask = y_mask & (k < count)
            w = tl.load(weights + (n * OUT + y) * K + k, mask=mask, other=0)
            v = tl.load(plane + ((first + k) * line).to(tl.int64)[:, None] +
                        x[None, :], mask=mask[:, None] & x_mask[None, :],
                        other=0)
            acc += v.to(tl.int32) * w[:, None]
        if FINAL:
            x = tl.where(tl.load(flip + n) != 0, line - 1 - x, x)
        out_rows = (c * OUT + y).to(tl.int64) * line
        tl.store(dst + dst_base + out_rows[:, None] + x[None, :], _clip8(acc),
                 mask=y_mask[:, None] & x_mask[None, :])


def _resize_plain(batch: CropBatch) -> torch.Tensor:
    """Upstream's calls, image by image (CPU)."""
    pixels = batch.pixels.cpu().numpy()
    out = []
    for (h, w), (th, tw), (top, left), (start, _, _), flip in zip(
            batch.sizes.tolist(), batch.targets.tolist(),
            batch.windows.tolist(), batch.offsets.tolist(),
            batch.flip.tolist()):
        crop = pixels[start:start + 3 * h * w].reshape(3, h, w)
        img = mmcv.imresize(
            np.ascontiguousarray(crop.transpose(1, 2, 0)), (tw, th),
            interpolation=batch.interpolation,
            backend='pillow')[top:top + batch.out_h, left:left + batch.out_w]
        if flip:
            img = mmcv.imflip(img, direction='horizontal')
        out.append(torch.from_numpy(img.transpose(2, 0, 1).copy()))
    return torch.stack(out).to(batch.pixels.device)


def _resize_kernels(batch: CropBatch) -> torch.Tensor:
    device = batch.pixels.device
    n = batch.sizes.shape[0]
    out = torch.empty((n, 3, batch.out_h, batch.out_w), dtype=torch.uint8,
                      device=device)
    scratch = torch.empty(max(batch.scratch_size, 1), dtype=torch.uint8,
                          device=device)
    width_first = batch.order[:batch.num_width_first]
    height_first = batch.order[batch.num_width_first:]
    w_args = (batch.sizes, batch.offsets, batch.w_bounds, batch.w_weights,
              batch.flip, batch.out_w)
    h_args = (batch.sizes, batch.offsets, batch.h_bounds, batch.h_weights,
              batch.flip, batch.out_h)
    block_x = triton.next_power_of_2(batch.out_w)
    block_r = max(1, 2048 // block_x)
    by, bx = 32, 64
    y_blocks = triton.cdiv(batch.out_h, by)

    def along_width(src, dst, images, rows, final):
        grid = (len(images), 3, triton.cdiv(rows, block_r))
        _resize_width[grid](src, dst, images, *w_args, batch.out_h,
                            batch.w_weights.shape[-1], FINAL=final,
                            BLOCK_R=block_r, BLOCK_X=block_x)

    def along_height(src, dst, images, line, final):
        grid = (len(images), 3 * y_blocks, triton.cdiv(line, bx))
        _resize_height[grid](src, dst, images, *h_args, batch.out_w,
                             batch.h_weights.shape[-1], FINAL=final,
                             BLOCK_Y=by, BLOCK_X=bx)

    if len(width_first):
        along_width(batch.pixels, scratch, width_first, batch.max_height,
                    False)
        along_height(scratch, out, width_first, batch.out_w, True)
    if len(height_first):
        along_height(batch.pixels, scratch, height_first, batch.max_width,
                     False)
        along_width(scratch, out, height_first, batch.out_h, True)
    return out


def resize_crops(batch: CropBatch, kernels: bool = None) -> torch.Tensor:
    """The crops of ``batch`` resized and flipped: uint8 ``(N, 3, out_h,
    out_w)`` on the batch's device. ``kernels``: the Triton kernels (the
    default on CUDA) or the plain form (the default for CPU tensors)."""
    if kernels is None:
        kernels = batch.pixels.is_cuda
    if kernels and triton is None:
        raise RuntimeError('resize_crops: the kernels need Triton')
    return _resize_kernels(batch) if kernels else _resize_plain(batch)

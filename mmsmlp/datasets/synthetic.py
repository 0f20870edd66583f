# Copyright (c) mmsmlp contributors. All rights reserved.
"""Small generated datasets in the real on-disk formats (ImageNet folders and
annotation files), so the whole training path runs without the real data.

Images show one coloured shape on a noisy background; the class is the
shape, so a model has to learn shape, not colour, to beat chance.
"""
import os
import os.path as osp
from multiprocessing import Pool
from typing import List, Optional, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

SHAPE_CLASSES = ('circle', 'square', 'triangle', 'cross', 'ring', 'bar',
                 'diamond', 'checker', 'dots', 'frame')


def _polygon(kind: str, cx: float, cy: float, r: float) -> List[tuple]:
    if kind == 'triangle':
        return [(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)]
    if kind == 'diamond':
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    raise KeyError(kind)


def draw_shape(kind: str, size: Union[int, Tuple[int, int]],
               rng: np.random.Generator) -> Image.Image:
    """One RGB image of ``kind`` at a random place, scale and colour on a
    random noisy background; ``size`` is its side or ``(width, height)``."""
    width, height = (size, size) if isinstance(size, int) else size
    background = rng.integers(0, 256, 3)
    noise = rng.normal(0, 20, (height, width, 3))
    img = np.clip(background + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(img)
    draw = ImageDraw.Draw(image)
    # a colour far from the background
    color = tuple(int(c) for c in (background + rng.integers(96, 160, 3)) %
                  256)
    r = rng.uniform(0.22, 0.38) * min(width, height)
    cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
    box = [cx - r, cy - r, cx + r, cy + r]
    w = max(2, int(r / 3))
    if kind == 'circle':
        draw.ellipse(box, fill=color)
    elif kind == 'square':
        draw.rectangle(box, fill=color)
    elif kind in ('triangle', 'diamond'):
        draw.polygon(_polygon(kind, cx, cy, r), fill=color)
    elif kind == 'cross':
        draw.rectangle([cx - w / 2, cy - r, cx + w / 2, cy + r], fill=color)
        draw.rectangle([cx - r, cy - w / 2, cx + r, cy + w / 2], fill=color)
    elif kind == 'ring':
        draw.ellipse(box, outline=color, width=w)
    elif kind == 'bar':
        draw.rectangle([cx - r, cy - w / 2, cx + r, cy + w / 2], fill=color)
    elif kind == 'checker':
        step = 2 * r / 4
        for i in range(4):
            for j in range(4):
                if (i + j) % 2 == 0:
                    x0, y0 = cx - r + i * step, cy - r + j * step
                    draw.rectangle([x0, y0, x0 + step, y0 + step], fill=color)
    elif kind == 'dots':
        for dx in (-0.6, 0, 0.6):
            for dy in (-0.6, 0.6):
                x, y = cx + dx * r, cy + dy * r
                draw.ellipse([x - w, y - w, x + w, y + w], fill=color)
    elif kind == 'frame':
        draw.rectangle(box, outline=color, width=w)
    else:
        raise KeyError(f'unknown shape {kind!r}')
    return image


def image_size(size: Union[int, Tuple[int, int]],
               rng: np.random.Generator) -> Tuple[int, int]:
    """``(width, height)``: ``size`` square, or for a ``(low, high)`` range a
    long side drawn in it and a short side of 2/3 to 1 of it (ImageNet's
    photos are mostly 4:3 and 3:2, about 400-500 px on the long side), in
    landscape or portrait."""
    if isinstance(size, int):
        return size, size
    low, high = size
    long_side = int(rng.integers(low, high + 1))
    short_side = int(round(long_side * rng.uniform(2 / 3, 1)))
    return ((long_side, short_side) if rng.random() < 0.75 else
            (short_side, long_side))


def _write_image(job: tuple) -> None:
    path, kind, size, seed = job
    rng = np.random.default_rng(seed)
    draw_shape(kind, image_size(size, rng), rng).save(path, quality=90)


def make_imagenet(root: str,
                  num_classes: int = 10,
                  train_per_class: int = 100,
                  val_per_class: int = 20,
                  size: Union[int, Tuple[int, int]] = 80,
                  seed: int = 0,
                  workers: Optional[int] = None) -> Tuple[str, ...]:
    """Write a dataset in ImageNet's layout under ``root``::

        root/train/<class>/<class>_00000.JPEG   root/meta/train.txt
        root/val/<class>/<class>_00000.JPEG     root/meta/val.txt

    as mmpretrain's ``ImageNet`` dataset reads it (annotation lines are
    ``<relative path> <label>``). ``size`` is the images' side, or a
    ``(low, high)`` range of their long side (see :func:`image_size`).
    Each image is drawn from its own seed (from ``seed``, the split, class
    and index), so ``workers`` processes (default: one per CPU, at most 16,
    from 512 images on) write the same files as one. Returns the class names.
    """
    if not 1 <= num_classes <= len(SHAPE_CLASSES):
        raise ValueError(f'num_classes must be in [1, {len(SHAPE_CLASSES)}]'
                         f', got {num_classes}')
    if not isinstance(size, int):
        size = tuple(int(s) for s in size)
        if len(size) != 2 or not 8 <= size[0] <= size[1]:
            raise ValueError(f'size must be a side or a (low, high) range '
                             f'with 8 <= low <= high, got {size}')
    classes = SHAPE_CLASSES[:num_classes]
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    jobs = []
    for split_id, (split, per_class) in enumerate(
        (('train', train_per_class), ('val', val_per_class))):
        lines = []
        for label, name in enumerate(classes):
            os.makedirs(osp.join(root, split, name), exist_ok=True)
            for i in range(per_class):
                rel = f'{name}/{name}_{i:05d}.JPEG'
                jobs.append((osp.join(root, split, rel), name, size,
                             [seed, split_id, label, i]))
                lines.append(f'{rel} {label}\n')
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.writelines(lines)
    if workers is None:  # processes only where they pay for their start
        workers = 1 if len(jobs) < 512 else min(os.cpu_count() or 1, 16)
    if workers > 1 and len(jobs) > 1:
        with Pool(workers) as pool:
            pool.map(_write_image, jobs, chunksize=16)
    else:
        for job in jobs:
            _write_image(job)
    return classes

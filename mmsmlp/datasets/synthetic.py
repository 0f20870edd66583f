# Copyright (c) mmsmlp contributors. All rights reserved.
"""Small generated datasets in the real on-disk formats (ImageNet folders and
annotation files), so the whole training path runs without the real data.

Images show one coloured shape on a noisy background; the class is the
shape, so a model has to learn shape, not colour, to beat chance. Options
make the task harder (for the learning check,
``tools/analysis_tools/learning_check.py``): up to 20 classes
(:data:`MORE_SHAPE_CLASSES`), a wider range of scales, clutter (random
strokes behind the shape) and occlusion (a patch of background over part of
the shape). Their defaults draw the original kind of images.
"""
import math
import os
import os.path as osp
from multiprocessing import Pool
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

SHAPE_CLASSES = ('circle', 'square', 'triangle', 'cross', 'ring', 'bar',
                 'diamond', 'checker', 'dots', 'frame')
# Classes 11-20, drawn only when ``num_classes > 10``.
MORE_SHAPE_CLASSES = ('hexagon', 'pentagon', 'star', 'ellipse', 'semicircle',
                      'ell', 'tee', 'arrow', 'trapezoid', 'hourglass')
ALL_SHAPE_CLASSES = SHAPE_CLASSES + MORE_SHAPE_CLASSES
# The shapes drawn as the polygon of :func:`_polygon`.
POLYGON_SHAPES = ('triangle', 'diamond', 'hexagon', 'pentagon', 'star', 'ell',
                  'tee', 'arrow', 'trapezoid', 'hourglass')


def _regular(n: int, cx: float, cy: float, r: float,
             phase: float = -math.pi / 2) -> List[tuple]:
    return [(cx + r * math.cos(phase + 2 * math.pi * k / n),
             cy + r * math.sin(phase + 2 * math.pi * k / n))
            for k in range(n)]


def _polygon(kind: str, cx: float, cy: float, r: float) -> List[tuple]:
    """The vertices of a polygonal shape of "radius" ``r`` (half its box
    side) centred at ``(cx, cy)``."""
    t = 0.6 * r  # stroke width of the letter-like shapes
    if kind == 'triangle':
        return [(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)]
    if kind == 'diamond':
        return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]
    if kind == 'hexagon':
        return _regular(6, cx, cy, r, 0.)
    if kind == 'pentagon':
        return _regular(5, cx, cy, r)
    if kind == 'star':
        outer, inner = _regular(5, cx, cy, r), _regular(
            5, cx, cy, 0.42 * r, -math.pi / 2 + math.pi / 5)
        return [p for pair in zip(outer, inner) for p in pair]
    if kind == 'ell':
        return [(cx - r, cy - r), (cx - r + t, cy - r),
                (cx - r + t, cy + r - t), (cx + r, cy + r - t),
                (cx + r, cy + r), (cx - r, cy + r)]
    if kind == 'tee':
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy - r + t),
                (cx + t / 2, cy - r + t), (cx + t / 2, cy + r),
                (cx - t / 2, cy + r), (cx - t / 2, cy - r + t),
                (cx - r, cy - r + t)]
    if kind == 'arrow':
        return [(cx - r, cy - t / 2), (cx, cy - t / 2), (cx, cy - r),
                (cx + r, cy), (cx, cy + r), (cx, cy + t / 2),
                (cx - r, cy + t / 2)]
    if kind == 'trapezoid':
        return [(cx - r / 2, cy - r), (cx + r / 2, cy - r), (cx + r, cy + r),
                (cx - r, cy + r)]
    if kind == 'hourglass':
        return [(cx - r, cy - r), (cx + r, cy - r), (cx - r, cy + r),
                (cx + r, cy + r)]
    raise KeyError(kind)


def _noise_patch(background: np.ndarray, width: int, height: int,
                 rng: np.random.Generator) -> Image.Image:
    noise = rng.normal(0, 20, (height, width, 3))
    return Image.fromarray(
        np.clip(background + noise, 0, 255).astype(np.uint8))


def draw_clutter(draw: ImageDraw.ImageDraw, width: int, height: int,
                 count: int, rng: np.random.Generator) -> None:
    """``count`` random straight strokes (1-4 pixels wide, random colours):
    clutter that belongs to no class."""
    for _ in range(count):
        x0, x1 = rng.uniform(0, width, 2)
        y0, y1 = rng.uniform(0, height, 2)
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.line([(x0, y0), (x1, y1)], fill=color,
                  width=int(rng.integers(1, 5)))


def draw_shape(kind: str,
               size: Union[int, Tuple[int, int]],
               rng: np.random.Generator,
               scale: Sequence[float] = (0.22, 0.38),
               clutter: int = 0,
               occlusion: float = 0.) -> Image.Image:
    """One RGB image of ``kind`` at a random place, scale and colour on a
    random noisy background.

    Args:
        kind (str): One of :data:`ALL_SHAPE_CLASSES`.
        size (int | tuple): Image side, or ``(width, height)``.
        rng (np.random.Generator): The random generator.
        scale (Sequence[float]): Range of the shape's "radius" (half its box
            side) over the image side. Defaults to (0.22, 0.38).
        clutter (int): Random strokes drawn behind the shape. Defaults to 0.
        occlusion (float): Up to this fraction of the shape's box is covered
            by a patch of background (the fraction is drawn uniformly from
            ``[0, occlusion]``). Defaults to 0.
    """
    if not 0 < scale[0] <= scale[1] < 0.5:
        raise ValueError(f'scale must be (min, max) with 0 < min <= max < '
                         f'0.5 (of the image side), got {scale}')
    if not 0 <= occlusion < 1:
        raise ValueError(f'occlusion must be in [0, 1), got {occlusion}')
    width, height = (size, size) if isinstance(size, int) else size
    background = rng.integers(0, 256, 3)
    noise = rng.normal(0, 20, (height, width, 3))
    img = np.clip(background + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(img)
    draw = ImageDraw.Draw(image)
    # a colour far from the background
    color = tuple(int(c) for c in (background + rng.integers(96, 160, 3)) %
                  256)
    r = rng.uniform(*scale) * min(width, height)
    cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
    box = [cx - r, cy - r, cx + r, cy + r]
    w = max(2, int(r / 3))
    if clutter:
        draw_clutter(draw, width, height, clutter, rng)
    if kind == 'circle':
        draw.ellipse(box, fill=color)
    elif kind == 'square':
        draw.rectangle(box, fill=color)
    elif kind in POLYGON_SHAPES:
        draw.polygon(_polygon(kind, cx, cy, r), fill=color)
    elif kind == 'ellipse':
        draw.ellipse([cx - r, cy - r / 2, cx + r, cy + r / 2], fill=color)
    elif kind == 'semicircle':
        draw.pieslice(box, 180, 360, fill=color)
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
        raise KeyError(f'unknown shape {kind!r}; choose one of '
                       f'{ALL_SHAPE_CLASSES}')
    if occlusion:
        # a patch of background over part of the shape's box
        area = rng.uniform(0, occlusion) * (2 * r)**2
        aspect = rng.uniform(0.5, 2)
        pw = max(1, int(round(min(2 * r, math.sqrt(area * aspect)))))
        ph = max(1, int(round(min(2 * r, area / pw))))
        x0 = int(rng.uniform(cx - r, cx + r - pw + 1))
        y0 = int(rng.uniform(cy - r, cy + r - ph + 1))
        image.paste(_noise_patch(background, pw, ph, rng), (x0, y0))
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
    path, kind, size, seed, options = job
    rng = np.random.default_rng(seed)
    draw_shape(kind, image_size(size, rng), rng, **options).save(
        path, quality=90)


def make_imagenet(root: str,
                  num_classes: int = 10,
                  train_per_class: int = 100,
                  val_per_class: int = 20,
                  size: Union[int, Tuple[int, int]] = 80,
                  seed: int = 0,
                  scale: Sequence[float] = (0.22, 0.38),
                  clutter: int = 0,
                  occlusion: float = 0.,
                  workers: Optional[int] = None) -> Tuple[str, ...]:
    """Write a dataset in ImageNet's layout under ``root``::

        root/train/<class>/<class>_00000.JPEG   root/meta/train.txt
        root/val/<class>/<class>_00000.JPEG     root/meta/val.txt

    as mmpretrain's ``ImageNet`` dataset reads it (annotation lines are
    ``<relative path> <label>``). Returns the class names: the first
    ``num_classes`` (at most 20) of :data:`ALL_SHAPE_CLASSES`.

    ``size`` is the images' side, or a ``(low, high)`` range of their long
    side (see :func:`image_size`). ``scale``, ``clutter`` and ``occlusion``
    are :func:`draw_shape`'s; the defaults write the original (easy) kind
    of images. Each image is drawn from its own seed (from ``seed``, the
    split, class and index), so ``workers`` processes (default: one per
    CPU, at most 16, from 512 images on) write the same files as one.
    """
    if not 1 <= num_classes <= len(ALL_SHAPE_CLASSES):
        raise ValueError(f'num_classes must be in [1, '
                         f'{len(ALL_SHAPE_CLASSES)}], got {num_classes}')
    if not isinstance(size, int):
        size = tuple(int(s) for s in size)
        if len(size) != 2 or not 8 <= size[0] <= size[1]:
            raise ValueError(f'size must be a side or a (low, high) range '
                             f'with 8 <= low <= high, got {size}')
    classes = ALL_SHAPE_CLASSES[:num_classes]
    options = dict(scale=tuple(scale), clutter=clutter, occlusion=occlusion)
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
                             [seed, split_id, label, i], options))
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

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Small generated datasets in the real on-disk formats (ImageNet folders and
annotation files), so the whole training path runs without the real data.

Images show one coloured shape on a noisy background; the class is the
shape, so a model has to learn shape, not colour, to beat chance.
"""
import os
import os.path as osp
from typing import List, Tuple

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


def draw_shape(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One ``size x size`` RGB image of ``kind`` at a random place, scale and
    colour on a random noisy background."""
    background = rng.integers(0, 256, 3)
    noise = rng.normal(0, 20, (size, size, 3))
    img = np.clip(background + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(img)
    draw = ImageDraw.Draw(image)
    # a colour far from the background
    color = tuple(int(c) for c in (background + rng.integers(96, 160, 3)) %
                  256)
    r = rng.uniform(0.22, 0.38) * size
    cx, cy = rng.uniform(r, size - r, 2)
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


def make_imagenet(root: str,
                  num_classes: int = 10,
                  train_per_class: int = 100,
                  val_per_class: int = 20,
                  size: int = 80,
                  seed: int = 0) -> Tuple[str, ...]:
    """Write a dataset in ImageNet's layout under ``root``::

        root/train/<class>/<class>_00000.JPEG   root/meta/train.txt
        root/val/<class>/<class>_00000.JPEG     root/meta/val.txt

    as mmpretrain's ``ImageNet`` dataset reads it (annotation lines are
    ``<relative path> <label>``). Returns the class names.
    """
    if not 1 <= num_classes <= len(SHAPE_CLASSES):
        raise ValueError(f'num_classes must be in [1, {len(SHAPE_CLASSES)}]'
                         f', got {num_classes}')
    classes = SHAPE_CLASSES[:num_classes]
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    for split, per_class in (('train', train_per_class),
                             ('val', val_per_class)):
        lines = []
        for label, name in enumerate(classes):
            os.makedirs(osp.join(root, split, name), exist_ok=True)
            for i in range(per_class):
                rel = f'{name}/{name}_{i:05d}.JPEG'
                draw_shape(name, size, rng).save(
                    osp.join(root, split, rel), quality=90)
                lines.append(f'{rel} {label}\n')
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.writelines(lines)
    return classes

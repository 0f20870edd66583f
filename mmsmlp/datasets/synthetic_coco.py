# Copyright (c) mmsmlp contributors. All rights reserved.
"""A small generated instance-segmentation dataset in COCO's real format.

``make_coco`` writes what ``data/coco`` holds for mmdet's ``CocoDataset``::

    root/train2017/000000000001.jpg ...
    root/val2017/000000000101.jpg ...
    root/annotations/instances_train2017.json
    root/annotations/instances_val2017.json

The annotation files have COCO's keys (``info``, ``licenses``, ``images``,
``annotations`` with polygon ``segmentation``, ``area``, ``iscrowd``,
``image_id``, ``bbox`` as ``[x, y, w, h]``, ``category_id``, ``id``, and
``categories``) and the real 80 COCO categories with their real ids (1-90,
with gaps), so mmdet's ``CocoDataset`` reads them with its default metainfo
and ``CocoMetric`` evaluates against them.

Each image shows a few non-overlapping filled shapes on a noisy background
(as :func:`mmsmlp.datasets.synthetic.draw_shape`); the category is the
shape (:data:`SHAPE_CATEGORIES`), so boxes, classes and masks are learnable.
Every shape is drawn as the very polygon stored in ``segmentation``.

Options make the task harder (for the learning check,
``tools/analysis_tools/learning_check.py``): up to 14 categories
(:data:`MORE_SHAPE_CATEGORIES`), more objects, a wider range of scales,
clutter (random strokes of no category behind the objects) and occlusion
(objects that overlap: the later one hides part of the earlier ones, whose
``segmentation`` is then the visible part as COCO's compressed RLE, with
``bbox`` and ``area`` of that part). Their defaults write exactly the
original dataset.
"""
import json
import math
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

from .synthetic import POLYGON_SHAPES, _polygon, draw_clutter

# The shape drawn for an object -> its COCO category name.
SHAPE_CATEGORIES = {
    'circle': 'sports ball',
    'square': 'tv',
    'triangle': 'kite',
    'octagon': 'stop sign',
}
# Categories 5-14, drawn only when ``num_categories > 4`` (the names are
# just distinct COCO categories).
MORE_SHAPE_CATEGORIES = {
    'diamond': 'frisbee',
    'hexagon': 'clock',
    'star': 'umbrella',
    'cross': 'fire hydrant',
    'ellipse': 'donut',
    'pentagon': 'traffic light',
    'ell': 'chair',
    'tee': 'bench',
    'arrow': 'parking meter',
    'trapezoid': 'vase',
}

# COCO 2017 category ids of the 80 classes, in the order of
# ``CocoDataset.METAINFO['classes']`` (ids 1-90 with 10 unused).
COCO_CATEGORY_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17,
                     18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34,
                     35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49,
                     50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
                     64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81,
                     82, 84, 85, 86, 87, 88, 89, 90)
# COCO's supercategories: (name, number of consecutive classes).
COCO_SUPERCATEGORIES = (('person', 1), ('vehicle', 8), ('outdoor', 5),
                        ('animal', 10), ('accessory', 5), ('sports', 10),
                        ('kitchen', 7), ('food', 10), ('furniture', 6),
                        ('electronic', 6), ('appliance', 5), ('indoor', 7))


def coco_categories() -> List[dict]:
    """COCO 2017's ``categories``: the 80 classes of mmdet's ``CocoDataset``
    with their real ids and supercategories."""
    from mmdet.datasets import CocoDataset
    names = CocoDataset.METAINFO['classes']
    supers = [s for s, n in COCO_SUPERCATEGORIES for _ in range(n)]
    assert len(names) == len(COCO_CATEGORY_IDS) == len(supers) == 80
    return [
        dict(supercategory=s, id=i, name=n)
        for s, i, n in zip(supers, COCO_CATEGORY_IDS, names)
    ]


def shape_polygon(kind: str, cx: float, cy: float,
                  r: float) -> List[Tuple[float, float]]:
    """Vertices of a shape of "radius" ``r`` centred at ``(cx, cy)``."""
    if kind in POLYGON_SHAPES:
        return _polygon(kind, cx, cy, r)
    if kind == 'ellipse':
        return [(cx + r * math.cos(2 * math.pi * k / 32),
                 cy + r / 2 * math.sin(2 * math.pi * k / 32))
                for k in range(32)]
    if kind == 'cross':
        w = r / 3
        return [(cx - w, cy - r), (cx + w, cy - r), (cx + w, cy - w),
                (cx + r, cy - w), (cx + r, cy + w), (cx + w, cy + w),
                (cx + w, cy + r), (cx - w, cy + r), (cx - w, cy + w),
                (cx - r, cy + w), (cx - r, cy - w), (cx - w, cy - w)]
    if kind == 'square':
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r),
                (cx - r, cy + r)]
    if kind in ('circle', 'octagon'):
        n, phase = (32, 0.) if kind == 'circle' else (8, math.pi / 8)
        return [(cx + r * math.cos(phase + 2 * math.pi * k / n),
                 cy + r * math.sin(phase + 2 * math.pi * k / n))
                for k in range(n)]
    raise KeyError(f'unknown shape {kind!r}; choose one of '
                   f'{sorted(SHAPE_CATEGORIES) + list(MORE_SHAPE_CATEGORIES)}')


def shape_kinds(num_categories: int = 4) -> List[str]:
    """The shapes of the first ``num_categories`` (4 to 14) categories."""
    kinds = sorted(SHAPE_CATEGORIES) + list(MORE_SHAPE_CATEGORIES)
    if not len(SHAPE_CATEGORIES) <= num_categories <= len(kinds):
        raise ValueError(f'num_categories must be in [{len(SHAPE_CATEGORIES)}'
                         f', {len(kinds)}], got {num_categories}')
    return kinds[:num_categories]


def _polygon_area(points: Sequence[Tuple[float, float]]) -> float:
    x, y = np.asarray(points, dtype=np.float64).T
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def _covers(box: Sequence[float], other: Sequence[float]) -> float:
    """The fraction of ``other``'s area that ``box`` covers."""
    w = min(box[2], other[2]) - max(box[0], other[0])
    h = min(box[3], other[3]) - max(box[1], other[1])
    if w <= 0 or h <= 0:
        return 0.
    return w * h / ((other[2] - other[0]) * (other[3] - other[1]))


def draw_objects(width: int,
                 height: int,
                 rng: np.random.Generator,
                 max_objects: int = 4,
                 num_categories: int = 4,
                 scale: Sequence[float] = (0.08, 0.25),
                 clutter: int = 0,
                 overlap: float = 0.) -> Tuple[Image.Image, List[dict]]:
    """A ``width x height`` RGB image with 1 to ``max_objects`` shapes.

    Args:
        width, height (int): Image size.
        rng (np.random.Generator): The random generator.
        max_objects (int): At most this many shapes. Defaults to 4.
        num_categories (int): Shapes of the first ``num_categories`` of
            :func:`shape_kinds`. Defaults to 4.
        scale (Sequence[float]): Range of a shape's "radius" over the short
            side. Defaults to (0.08, 0.25).
        clutter (int): Random strokes (no category) drawn behind the shapes.
            Defaults to 0.
        overlap (float): A new shape's box may cover at most this fraction
            of any earlier shape's box (it is drawn on top). 0 (default): the
            shapes do not overlap.

    Returns:
        tuple: The image and one ``dict(kind, polygon)`` per shape,
        ``polygon`` being the drawn vertices (pixel coordinates); with
        ``overlap > 0`` also ``visible``, the boolean ``(height, width)``
        mask of its pixels that no later shape hides.
    """
    if not 0 <= overlap < 1:
        raise ValueError(f'overlap must be in [0, 1), got {overlap}')
    if not 0 < scale[0] <= scale[1] < 0.5:
        raise ValueError(f'scale must be (min, max) with 0 < min <= max < '
                         f'0.5 (of the short side), got {scale}')
    background = rng.integers(0, 256, 3)
    noise = rng.normal(0, 20, (height, width, 3))
    image = Image.fromarray(
        np.clip(background + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    if clutter:
        draw_clutter(draw, width, height, clutter, rng)
    kinds = shape_kinds(num_categories)
    short = min(width, height)
    objects, boxes = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):  # rejection sampling: no overlaps
            r = rng.uniform(*scale) * short
            cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
            box = (cx - r, cy - r, cx + r, cy + r)
            if all(_covers(box, b) <= overlap for b in boxes):
                break
        else:
            continue
        kind = kinds[int(rng.integers(len(kinds)))]
        polygon = [(round(x, 2), round(y, 2))
                   for x, y in shape_polygon(kind, cx, cy, r)]
        if overlap:
            # shapes that overlap need colours that differ from each other
            # too: any colour far from the background
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            while np.abs(np.subtract(color, background)).sum() < 150:
                color = tuple(int(c) for c in rng.integers(0, 256, 3))
        else:
            # a colour far from the background, as in ``draw_shape``
            color = tuple(
                int(c) for c in (background + rng.integers(96, 160, 3)) % 256)
        draw.polygon(polygon, fill=color)
        boxes.append(box)
        objects.append(dict(kind=kind, polygon=polygon))
        if overlap:
            # the pixels the polygon fills, as ImageDraw filled them above
            canvas = Image.new('L', (width, height), 0)
            ImageDraw.Draw(canvas).polygon(polygon, fill=1)
            mask = np.asarray(canvas, dtype=bool)
            for obj in objects[:-1]:
                obj['visible'] &= ~mask
            objects[-1]['visible'] = mask.copy()
    if overlap:  # drop the shapes that later ones hide entirely
        objects = [obj for obj in objects if obj['visible'].any()]
    return image, objects


def category_of(kind: str) -> str:
    """The COCO category name of a shape."""
    return {**SHAPE_CATEGORIES, **MORE_SHAPE_CATEGORIES}[kind]


def _visible_part(mask: np.ndarray) -> Tuple[dict, float, List[float]]:
    """COCO's compressed RLE, area and ``[x, y, w, h]`` box of a mask."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle['counts'] = rle['counts'].decode('ascii')  # JSON-serialisable
    return (rle, float(mask_utils.area(rle)),
            [float(v) for v in mask_utils.toBbox(rle)])


def _parse_size(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        width = height = size
    else:
        width, height = size
    if min(width, height) < 32:
        raise ValueError(f'images must be at least 32 pixels on each side '
                         f'(mmdet\'s COCO configs drop smaller ones), got '
                         f'{size}')
    return int(width), int(height)


def make_coco(root: str,
              num_train: int = 200,
              num_val: int = 50,
              size: Union[int, Sequence[int]] = (640, 480),
              seed: int = 0,
              num_categories: int = 4,
              max_objects: int = 4,
              scale: Sequence[float] = (0.08, 0.25),
              clutter: int = 0,
              overlap: float = 0.) -> Dict[str, str]:
    """Write a generated dataset in COCO 2017's layout and format.

    Args:
        root (str): Output folder (``data/coco`` for the configs).
        num_train (int): Images in ``train2017``.
        num_val (int): Images in ``val2017``.
        size (int | tuple[int, int] | list[tuple[int, int]]): Image size,
            ``(width, height)`` or one side for square images; a list of
            sizes: each image's drawn from it (repeat a size to weight it).
        seed (int): Random seed; the same arguments write the same files.
        num_categories, max_objects, scale, clutter, overlap: Harder data
            (:func:`draw_objects`); the defaults write the original dataset.
            With ``overlap > 0`` the masks are the visible parts, in RLE.

    Returns:
        dict: ``{'train': path, 'val': path}`` of the annotation files.
    """
    if isinstance(size, list) and size and not isinstance(size[0], int):
        sizes = [_parse_size(s) for s in size]
    else:
        sizes = [_parse_size(size)]
    if num_train < 1 or num_val < 1:
        raise ValueError(f'num_train and num_val must be >= 1, got '
                         f'{num_train} and {num_val}')
    categories = coco_categories()
    cat_id = {c['name']: c['id'] for c in categories}
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    ann_files = {}
    image_id = ann_id = 0
    for split, num in (('train', num_train), ('val', num_val)):
        folder = f'{split}2017'
        os.makedirs(osp.join(root, folder), exist_ok=True)
        images, annotations = [], []
        for _ in range(num):
            image_id += 1
            file_name = f'{image_id:012d}.jpg'  # COCO's file naming
            # one size draws nothing: the same files as before size lists
            width, height = (sizes[0] if len(sizes) == 1 else
                             sizes[rng.integers(len(sizes))])
            image, objects = draw_objects(width, height, rng, max_objects,
                                          num_categories, scale, clutter,
                                          overlap)
            image.save(osp.join(root, folder, file_name), quality=90)
            images.append(
                dict(license=1, file_name=file_name, height=height,
                     width=width, id=image_id))
            for obj in objects:
                ann_id += 1
                if 'visible' in obj:
                    segmentation, area, bbox = _visible_part(obj['visible'])
                else:
                    xs, ys = zip(*obj['polygon'])
                    x0, y0 = max(min(xs), 0.), max(min(ys), 0.)
                    x1, y1 = min(max(xs), width), min(max(ys), height)
                    segmentation = [[c for xy in obj['polygon'] for c in xy]]
                    area = round(_polygon_area(obj['polygon']), 2)
                    bbox = [round(v, 2) for v in (x0, y0, x1 - x0, y1 - y0)]
                annotations.append(
                    dict(
                        segmentation=segmentation,
                        area=area,
                        iscrowd=0,
                        image_id=image_id,
                        bbox=bbox,
                        category_id=cat_id[category_of(obj['kind'])],
                        id=ann_id))
        ann_files[split] = osp.join(root, 'annotations',
                                    f'instances_{folder}.json')
        with open(ann_files[split], 'w') as f:
            json.dump(
                dict(
                    info=dict(
                        description='mmsmlp synthetic COCO-format shapes',
                        version='1.0', year=2017, contributor='mmsmlp',
                        url='', date_created=''),
                    licenses=[dict(id=1, name='generated', url='')],
                    images=images,
                    annotations=annotations,
                    categories=categories), f)
    return ann_files

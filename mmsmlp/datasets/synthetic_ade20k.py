# Copyright (c) mmsmlp contributors. All rights reserved.
"""A small generated dataset in ADE20K's on-disk layout (ADEChallengeData2016),
so the whole segmentation path runs without the real data.

Each image is a scene: an upper region (wall or sky), a lower region (floor,
road or grass) and a few objects (ellipses, boxes, polygons) of other ADE20K
classes, plus one unlabelled blob. Every class has its own colour and
texture, so a model can learn the labels. Label maps follow ADE20K: uint8
PNGs, 0 = "other"/unlabelled (ignored, the dataset uses
``reduce_zero_label=True``), 1..150 = the classes.

Options make the task harder (for the learning check,
``tools/analysis_tools/learning_check.py``): up to 30 object classes
(:data:`MORE_OBJECT_CLASSES`), more objects per scene (later ones occlude
earlier ones, as the label map records), a wider range of object sizes and
colour jitter per object (colours of classes overlap, so the texture and
shape matter). Their defaults write exactly the original dataset.
"""
import os
import os.path as osp
from typing import Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw

NUM_CLASSES = 150
# ADE20K class ids (1-based, as in the label PNGs): wall, sky / floor, road,
# grass / bed, door, table, person, chair, car, plant, painting.
UPPER_CLASSES = (1, 3)
LOWER_CLASSES = (4, 7, 10)
OBJECT_CLASSES = (8, 15, 16, 13, 20, 21, 18, 23)
CLASS_IDS = tuple(sorted(UPPER_CLASSES + LOWER_CLASSES + OBJECT_CLASSES))
# Object classes 9-30, used only when ``num_object_classes > 8``: building,
# tree, ceiling, windowpane, sidewalk, earth, cabinet, mountain, curtain,
# water, sofa, shelf, house, sea, mirror, rug, field, armchair, seat, fence,
# desk, rock.
MORE_OBJECT_CLASSES = (2, 5, 6, 9, 12, 14, 11, 17, 19, 22, 24, 25, 26, 27, 28,
                       29, 30, 31, 32, 33, 34, 35)
IGNORE_ID = 0


def class_colour(class_id: int) -> np.ndarray:
    """The fixed RGB base colour of an ADE20K class id."""
    return np.random.default_rng(1000 + class_id).integers(30, 226, 3)


def object_classes(num_object_classes: int = 8) -> Tuple[int, ...]:
    """The ADE20K ids of the first ``num_object_classes`` (1 to 30) object
    classes."""
    ids = OBJECT_CLASSES + MORE_OBJECT_CLASSES
    if not 1 <= num_object_classes <= len(ids):
        raise ValueError(f'num_object_classes must be in [1, {len(ids)}], '
                         f'got {num_object_classes}')
    return ids[:num_object_classes]


def _paint(image: np.ndarray, label: np.ndarray, mask: np.ndarray,
           class_id: int, rng: np.random.Generator,
           colour_jitter: float = 0.) -> None:
    """Paint ``mask`` with the texture of ``class_id`` (its colour, plus a
    uniform offset in ``[-colour_jitter, colour_jitter]`` per channel when
    ``colour_jitter`` is not 0) and label it."""
    colour = class_colour(class_id) if class_id != IGNORE_ID else \
        rng.integers(0, 256, 3)
    # a class-specific texture: stripes whose period depends on the class
    h, w = mask.shape
    period = 4 + class_id % 7
    stripes = ((np.arange(w)[None, :] + np.arange(h)[:, None] *
                (class_id % 3)) // period) % 2
    if colour_jitter:
        # noise drawn for the painted pixels only (the original dataset,
        # without jitter, keeps its images: noise over the whole image)
        colour = colour + rng.uniform(-colour_jitter, colour_jitter, 3)
        texture = colour + 18 * stripes[mask][:, None] + rng.normal(
            0, 8, (int(mask.sum()), 3))
        image[mask] = np.clip(texture, 0, 255)
    else:
        texture = colour + 18 * stripes[..., None] + rng.normal(
            0, 8, (h, w, 3))
        image[mask] = np.clip(texture[mask], 0, 255)
    label[mask] = class_id


def _shape_mask(size: Tuple[int, int],
                rng: np.random.Generator,
                scale: Sequence[float] = (0.08, 0.25)) -> np.ndarray:
    h, w = size
    canvas = Image.new('L', (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    rh, rw = rng.uniform(*scale) * h, rng.uniform(*scale) * w
    cy, cx = rng.uniform(rh, h - rh), rng.uniform(rw, w - rw)
    kind = rng.integers(3)
    if kind == 0:
        draw.ellipse([cx - rw, cy - rh, cx + rw, cy + rh], fill=1)
    elif kind == 1:
        draw.rectangle([cx - rw, cy - rh, cx + rw, cy + rh], fill=1)
    else:
        angles = np.sort(rng.uniform(0, 2 * np.pi, 5))
        draw.polygon([(cx + rw * np.cos(a), cy + rh * np.sin(a))
                      for a in angles], fill=1)
    return np.asarray(canvas, dtype=bool)


def draw_scene(size: Tuple[int, int],
               rng: np.random.Generator,
               num_objects: Tuple[int, int] = (2, 4),
               num_object_classes: int = 8,
               scale: Sequence[float] = (0.08, 0.25),
               colour_jitter: float = 0.) -> Tuple[Image.Image, Image.Image]:
    """One ``(h, w)`` scene: an RGB image and its ADE20K label map (mode
    ``'L'``, values in ``{0} | CLASS_IDS`` by default).

    Args:
        size (tuple[int, int]): ``(h, w)``.
        rng (np.random.Generator): The random generator.
        num_objects (tuple[int, int]): Range of the number of objects.
        num_object_classes (int): Objects of the first ``num_object_classes``
            of :func:`object_classes`. Defaults to 8.
        scale (Sequence[float]): Range of an object's half height (width)
            over the image height (width). Defaults to (0.08, 0.25).
        colour_jitter (float): Each region's colour is its class colour
            plus a uniform offset in ``[-colour_jitter, colour_jitter]`` per
            channel. Defaults to 0.
    """
    if not 0 < scale[0] <= scale[1] < 0.5:
        raise ValueError(f'scale must be (min, max) with 0 < min <= max < '
                         f'0.5 (of the image side), got {scale}')
    if not 1 <= num_objects[0] <= num_objects[1]:
        raise ValueError(f'num_objects must be (min, max) with 1 <= min <= '
                         f'max, got {num_objects}')
    classes = object_classes(num_object_classes)
    h, w = size
    image = np.zeros((h, w, 3), np.float64)
    label = np.zeros((h, w), np.uint8)
    rows = np.arange(h)[:, None]
    horizon = int(rng.uniform(0.3, 0.7) * h)
    _paint(image, label, np.broadcast_to(rows < horizon, (h, w)),
           int(rng.choice(UPPER_CLASSES)), rng, colour_jitter)
    _paint(image, label, np.broadcast_to(rows >= horizon, (h, w)),
           int(rng.choice(LOWER_CLASSES)), rng, colour_jitter)
    count = int(rng.integers(num_objects[0], num_objects[1] + 1))
    for class_id in rng.choice(
            classes, count, replace=count > len(classes)):
        _paint(image, label, _shape_mask(size, rng, scale), int(class_id),
               rng, colour_jitter)
    # one unlabelled ("other") blob, as ADE20K has unlabelled pixels
    _paint(image, label, _shape_mask(size, rng, scale), IGNORE_ID, rng)
    return (Image.fromarray(image.astype(np.uint8)),
            Image.fromarray(label, mode='L'))


def make_ade20k(root: str,
                num_train: int = 40,
                num_val: int = 10,
                size: Union[int, Sequence[int]] = (256, 320),
                seed: int = 0,
                num_objects: Tuple[int, int] = (2, 4),
                num_object_classes: int = 8,
                scale: Sequence[float] = (0.08, 0.25),
                colour_jitter: float = 0.) -> Tuple[int, ...]:
    """Write a dataset in ADE20K's layout under ``root``::

        root/images/training/ADE_train_00000001.jpg
        root/images/validation/ADE_val_00000001.jpg
        root/annotations/training/ADE_train_00000001.png
        root/annotations/validation/ADE_val_00000001.png

    as mmseg's ``ADE20KDataset`` reads it (``data_root=root``; JPEG images,
    uint8 PNG label maps with 0 = unlabelled, 1..150 = classes).

    Args:
        root (str): Output folder (``data/ade/ADEChallengeData2016`` for the
            configs' default ``data_root``).
        num_train (int): Number of training images.
        num_val (int): Number of validation images.
        size (int | Sequence[int]): Image size, ``side`` or ``(h, w)``.
        seed (int): Random seed.
        num_objects, num_object_classes, scale, colour_jitter: Harder scenes
            (:func:`draw_scene`); the defaults write the original dataset.

    Returns:
        tuple[int]: The ADE20K class ids (1..150) the scenes can contain.
    """
    if isinstance(size, int):
        size = (size, size)
    size = tuple(int(s) for s in size)
    if len(size) != 2 or min(size) < 16:
        raise ValueError(f'size must be a side or (h, w) of at least 16 '
                         f'pixels, got {size}')
    if num_train < 1 or num_val < 1:
        raise ValueError(f'need at least one training and one validation '
                         f'image, got num_train={num_train}, '
                         f'num_val={num_val}')
    rng = np.random.default_rng(seed)
    for split, prefix, num in (('training', 'ADE_train', num_train),
                               ('validation', 'ADE_val', num_val)):
        img_dir = osp.join(root, 'images', split)
        ann_dir = osp.join(root, 'annotations', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        for i in range(1, num + 1):
            image, label = draw_scene(size, rng, num_objects,
                                      num_object_classes, scale,
                                      colour_jitter)
            name = f'{prefix}_{i:08d}'
            image.save(osp.join(img_dir, name + '.jpg'), quality=90)
            label.save(osp.join(ann_dir, name + '.png'))
    return tuple(
        sorted(UPPER_CLASSES + LOWER_CLASSES +
               object_classes(num_object_classes)))

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Write a generated instance-segmentation dataset in COCO 2017's format.

    python tools/dataset_converters/make_synthetic_coco.py data/synthetic_coco [--size 640x480]

Layout: ROOT/train2017/*.jpg, ROOT/val2017/*.jpg and
ROOT/annotations/instances_{train,val}2017.json, as mmdet's COCO configs read
it (set data_root=ROOT/ with --cfg-options, see docs/detection.md).

Harder variants (more categories and objects, scale variation, clutter,
overlapping objects with visible-part masks), as the learning check uses
(docs/learning.md)::

    python tools/dataset_converters/make_synthetic_coco.py data/coco_hard \
        --num-categories 14 --max-objects 10 --scale 0.04 0.3 --clutter 10 \
        --overlap 0.3
"""
import argparse
import os.path as osp

from mmsmlp.datasets.synthetic_coco import (category_of, make_coco,
                                            shape_kinds)


def image_size(text):
    """``W`` or ``WxH``."""
    try:
        sides = [int(s) for s in text.lower().split('x')]
    except ValueError:
        sides = []
    if len(sides) not in (1, 2):
        raise argparse.ArgumentTypeError(
            f'size must be W or WxH (e.g. 1333x800), got {text!r}')
    return sides[0] if len(sides) == 1 else tuple(sides)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('root', help='output folder')
    parser.add_argument('--num-train', type=int, default=200)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument(
        '--size', type=image_size, default=(640, 480),
        help='image size, W or WxH (default 640x480)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--num-categories', type=int, default=4, help='4 (default) to 14')
    parser.add_argument(
        '--max-objects', type=int, default=4, help='objects per image')
    parser.add_argument(
        '--scale', type=float, nargs=2, default=(0.08, 0.25),
        metavar=('MIN', 'MAX'),
        help='range of an object\'s half side over the short image side')
    parser.add_argument(
        '--clutter', type=int, default=0,
        help='random strokes (no category) behind the objects')
    parser.add_argument(
        '--overlap', type=float, default=0.,
        help='an object may cover up to this fraction of an earlier one\'s '
        'box (masks are then the visible parts, as RLE); 0: no overlap')
    args = parser.parse_args()
    if osp.exists(osp.join(args.root, 'annotations',
                           'instances_val2017.json')):
        print(f'{args.root} already holds a dataset: leaving it as it is')
        return
    make_coco(args.root, args.num_train, args.num_val, args.size, args.seed,
              args.num_categories, args.max_objects, args.scale,
              args.clutter, args.overlap)
    print(f'Wrote {args.num_train} train + {args.num_val} val images '
          f'({args.size}) in COCO format to {args.root}; categories: ' +
          ', '.join(f'{k} -> {category_of(k)}'
                    for k in shape_kinds(args.num_categories)))


if __name__ == '__main__':
    main()

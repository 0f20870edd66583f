# Copyright (c) mmsmlp contributors. All rights reserved.
"""Write a generated instance-segmentation dataset in COCO 2017's format.

    python tools/dataset_converters/make_synthetic_coco.py data/synthetic_coco [--size 640x480]

Layout: ROOT/train2017/*.jpg, ROOT/val2017/*.jpg and
ROOT/annotations/instances_{train,val}2017.json, as mmdet's COCO configs read
it (set data_root=ROOT/ with --cfg-options, see docs/detection.md).
"""
import argparse
import os.path as osp

from mmsmlp.datasets.synthetic_coco import SHAPE_CATEGORIES, make_coco


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
    args = parser.parse_args()
    if osp.exists(osp.join(args.root, 'annotations',
                           'instances_val2017.json')):
        print(f'{args.root} already holds a dataset: leaving it as it is')
        return
    make_coco(args.root, args.num_train, args.num_val, args.size, args.seed)
    print(f'Wrote {args.num_train} train + {args.num_val} val images '
          f'({args.size}) in COCO format to {args.root}; categories: '
          + ', '.join(f'{k} -> {v}' for k, v in SHAPE_CATEGORIES.items()))


if __name__ == '__main__':
    main()

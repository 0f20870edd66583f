# Copyright (c) mmsmlp contributors. All rights reserved.
"""Write the generated "shapes" dataset in ImageNet's on-disk layout.

    python tools/dataset_converters/make_synthetic_imagenet.py data/synthetic_imagenet

Harder variants (more classes, scale variation, clutter, occlusion), as the
learning check uses (docs/learning.md)::

    python tools/dataset_converters/make_synthetic_imagenet.py data/shapes20 \
        --num-classes 20 --scale 0.12 0.45 --clutter 8 --occlusion 0.35
"""
import argparse
import os.path as osp

from mmsmlp.datasets import make_imagenet


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('root', help='output folder')
    parser.add_argument(
        '--num-classes', type=int, default=10, help='10 (default) to 20')
    parser.add_argument('--train-per-class', type=int, default=100)
    parser.add_argument('--val-per-class', type=int, default=20)
    parser.add_argument('--size', type=int, default=80, help='image side')
    parser.add_argument(
        '--long-side', type=int, nargs=2, metavar=('LOW', 'HIGH'),
        help='instead of square images of --size: a long side drawn in '
        '[LOW, HIGH] and a short side of 2/3 to 1 of it (ImageNet-like: '
        '--long-side 400 500)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--scale', type=float, nargs=2, default=(0.22, 0.38),
        metavar=('MIN', 'MAX'),
        help='range of the shape\'s half side over the image side')
    parser.add_argument(
        '--clutter', type=int, default=0,
        help='random strokes behind each shape')
    parser.add_argument(
        '--occlusion', type=float, default=0.,
        help='cover up to this fraction of each shape\'s box with '
        'background')
    parser.add_argument('--workers', type=int,
                        help='processes writing images (default: CPUs, '
                        'at most 16)')
    args = parser.parse_args()
    if osp.exists(osp.join(args.root, 'meta', 'val.txt')):
        print(f'{args.root} already holds a dataset: leaving it as it is')
        return
    classes = make_imagenet(args.root, args.num_classes, args.train_per_class,
                            args.val_per_class,
                            tuple(args.long_side or ()) or args.size,
                            args.seed, args.scale, args.clutter,
                            args.occlusion, args.workers)
    print(f'Wrote {len(classes)} classes x ({args.train_per_class} train + '
          f'{args.val_per_class} val) images to {args.root}')


if __name__ == '__main__':
    main()

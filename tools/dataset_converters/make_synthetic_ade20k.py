# Copyright (c) mmsmlp contributors. All rights reserved.
"""Write a generated scene dataset in ADE20K's on-disk layout.

    python tools/dataset_converters/make_synthetic_ade20k.py data/ade/ADEChallengeData2016

writes ``images/{training,validation}/*.jpg`` and
``annotations/{training,validation}/*.png`` (uint8 labels, 0 = unlabelled,
1..150 = ADE20K classes), as mmseg's ``ADE20KDataset`` reads them.

Harder scenes (more object classes and objects, wider size range, colour
jitter), as the learning check uses (docs/learning.md)::

    python tools/dataset_converters/make_synthetic_ade20k.py data/ade_hard \
        --num-object-classes 30 --num-objects 4 10 --scale 0.04 0.3 \
        --colour-jitter 40
"""
import argparse
import os.path as osp

from mmsmlp.datasets.synthetic_ade20k import make_ade20k


def parse_size(text):
    parts = text.lower().split('x')
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'size must be SIDE or HxW (e.g. 512x683), got {text!r}')
    if len(sizes) == 1:
        sizes *= 2
    if len(sizes) != 2:
        raise argparse.ArgumentTypeError(
            f'size must be SIDE or HxW (e.g. 512x683), got {text!r}')
    return tuple(sizes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('root', help='output folder (the data_root)')
    parser.add_argument('--num-train', type=int, default=40)
    parser.add_argument('--num-val', type=int, default=10)
    parser.add_argument(
        '--size',
        type=parse_size,
        default=(256, 320),
        help='image size, SIDE or HxW (default 256x320)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--num-object-classes', type=int, default=8,
        help='object classes, 8 (default) to 30')
    parser.add_argument(
        '--num-objects', type=int, nargs=2, default=(2, 4),
        metavar=('MIN', 'MAX'), help='objects per scene')
    parser.add_argument(
        '--scale', type=float, nargs=2, default=(0.08, 0.25),
        metavar=('MIN', 'MAX'),
        help='range of an object\'s half side over the image side')
    parser.add_argument(
        '--colour-jitter', type=float, default=0.,
        help='random offset of each region\'s colour (0-255 scale)')
    args = parser.parse_args()
    if osp.isdir(osp.join(args.root, 'annotations', 'validation')):
        print(f'{args.root} already holds a dataset: leaving it as it is')
        return
    classes = make_ade20k(args.root, args.num_train, args.num_val, args.size,
                          args.seed, tuple(args.num_objects),
                          args.num_object_classes, args.scale,
                          args.colour_jitter)
    print(f'Wrote {args.num_train} training + {args.num_val} validation '
          f'{args.size[0]}x{args.size[1]} images (ADE20K class ids '
          f'{list(classes)}) to {args.root}')


if __name__ == '__main__':
    main()

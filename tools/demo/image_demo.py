# Copyright (c) mmsmlp contributors. All rights reserved.
"""Classify an image with a config and checkpoint (mmpretrain's
ImageClassificationInferencer).

    python tools/demo/image_demo.py IMAGE CONFIG CHECKPOINT [--device cuda]
"""
import argparse

from mmpretrain.apis import ImageClassificationInferencer

import mmsmlp  # noqa: F401  (registers SMLPNet and mmsmlp's modules)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--show-dir', help='save a picture of the result')
    args = parser.parse_args()
    inferencer = ImageClassificationInferencer(
        args.config, pretrained=args.checkpoint, device=args.device)
    result = inferencer(args.img, show_dir=args.show_dir)[0]
    print(f'{args.img}: {result["pred_class"]} '
          f'(label {result["pred_label"]}, score {result["pred_score"]:.3f})')


if __name__ == '__main__':
    main()

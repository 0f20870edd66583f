# Copyright (c) mmsmlp contributors. All rights reserved.
"""Segment an image with a config and checkpoint (mmseg's MMSegInferencer)
and write the prediction as a colour overlay on the image.

    python tools/demo/seg_demo.py IMAGE CONFIG CHECKPOINT --out-file out.jpg \
        [--device cpu] [--opacity 0.5] [--cfg-options KEY=VALUE ...]

The image goes through the config's test pipeline (resized as in testing)
and its inference mode (``model.test_cfg``: sliding window or whole image).
"""
import argparse
import os
import os.path as osp

# First: registers SMLPNet and mmsmlp's modules (and, with transformers >= 4.56,
# mmpretrain's multimodal placeholders: mmseg's
# inferencer imports mmpretrain's multimodal models through mmseg.models).
import mmsmlp  # noqa: F401,I001  isort:skip
import mmcv
import numpy as np
from mmengine.config import Config, DictAction
from mmseg.apis import MMSegInferencer
from mmseg.registry import DATASETS


def dataset_meta_from_config(cfg) -> dict:
    """Classes and palette of the config's test dataset class."""
    dataset_type = cfg.test_dataloader.dataset.type
    meta = DATASETS.get(dataset_type).METAINFO
    return dict(classes=meta['classes'], palette=meta['palette'])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out-file', required=True, help='where to write the overlay picture')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument(
        '--opacity',
        type=float,
        default=0.5,
        help='opacity of the colour mask over the image, in (0, 1]')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs (e.g. '
        'model.test_cfg.mode=whole)')
    args = parser.parse_args()
    if not 0 < args.opacity <= 1:
        parser.error(f'--opacity must be in (0, 1], got {args.opacity}')
    for path in (args.img, args.config, args.checkpoint):
        if not osp.isfile(path):
            parser.error(f'{path} not found')

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    inferencer = MMSegInferencer(
        model=cfg, weights=args.checkpoint, device=args.device)
    model = inferencer.model
    num_classes = model.decode_head.num_classes
    if len(model.dataset_meta['classes']) != num_classes:
        # The checkpoint has no class names (MMSegInferencer then falls back
        # to Cityscapes'): use those of the config's dataset.
        model.dataset_meta = dataset_meta_from_config(inferencer.cfg)
    result = inferencer(
        args.img, return_vis=True, opacity=args.opacity, with_labels=False)
    # one input: one RGB picture and one label map (not lists)
    vis, seg = result['visualization'], result['predictions']

    out_dir = osp.dirname(osp.abspath(args.out_file))
    os.makedirs(out_dir, exist_ok=True)
    if not mmcv.imwrite(vis[..., ::-1], args.out_file):
        raise OSError(f'could not write {args.out_file}')

    labels, counts = np.unique(seg, return_counts=True)
    classes = model.dataset_meta['classes']
    order = np.argsort(-counts)
    summary = ', '.join(f'{classes[labels[i]]} {counts[i] / seg.size:.0%}'
                        for i in order[:5])
    print(f'{args.img}: {summary}')
    print(f'Saved {args.out_file}')


if __name__ == '__main__':
    main()

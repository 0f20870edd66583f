# Copyright (c) mmsmlp contributors. All rights reserved.
"""Detect and segment objects in an image, and draw the boxes and masks
(mmdet's DetInferencer).

    python tools/demo/det_demo.py IMAGE CONFIG CHECKPOINT --out-file out.jpg [--device cpu]
"""
import argparse
import os.path as osp

# First: registers SMLPNet and mmsmlp's modules.
import mmsmlp  # noqa: F401,I001  isort:skip
import mmcv
import torch
from mmdet.apis import DetInferencer
from mmengine.config import Config, DictAction


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('img', help='image file')
    parser.add_argument('config', help='config file (e.g. configs/mask_rcnn/'
                        'mask-rcnn_smlpnet-t_fpn_1x_coco.py)')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--out-file', default='det_result.jpg',
        help='where to write the picture (default det_result.jpg)')
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu',
        help='device, e.g. cpu, cuda, cuda:1 (default: cuda if available)')
    parser.add_argument(
        '--score-thr', type=float, default=0.3,
        help='draw the detections with at least this score (default 0.3)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value pairs (e.g. the '
        'test resize: test_dataloader.dataset.pipeline.1.scale="(640,640)")')
    return parser.parse_args()


def main():
    args = parse_args()
    for path in (args.img, args.config, args.checkpoint):
        if not osp.isfile(path):
            raise FileNotFoundError(f'{path} not found')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    inferencer = DetInferencer(
        model=cfg, weights=args.checkpoint, device=args.device,
        show_progress=False)
    result = inferencer(
        args.img, return_vis=True, no_save_vis=True,
        pred_score_thr=args.score_thr)
    # The visualizer draws on an RGB copy of the image; mmcv writes BGR.
    mmcv.imwrite(mmcv.rgb2bgr(result['visualization'][0]), args.out_file)
    pred = result['predictions'][0]
    classes = inferencer.model.dataset_meta['classes']
    kept = [(classes[label], score)
            for label, score in zip(pred['labels'], pred['scores'])
            if score >= args.score_thr]
    print(f'{args.img}: {len(kept)} detections with score >= '
          f'{args.score_thr}' + ''.join(f'\n  {name}: {score:.3f}'
                                        for name, score in kept))
    print(f'Wrote {args.out_file}')


if __name__ == '__main__':
    main()

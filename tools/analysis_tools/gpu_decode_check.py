# Copyright (c) mmsmlp contributors. All rights reserved.
"""The GPU validation-decoding path (configs/gpudecode/) against the CPU
test pipeline, on generated ImageNet-format JPEGs of ImageNet's size: how
far apart the inputs are (levels of 0-255, per image and over all pixels)
and the data preprocessor's cost per batch, host and device.

    python tools/analysis_tools/gpu_decode_check.py \\
        configs/gpudecode/smlpnet-t_8xb128_in1k_gpudecode.py

On a GPU the decoder is nvJPEG (the CPU pipeline: OpenCV's libjpeg-turbo),
so this measures what tests/test_gpu_decode.py cannot on the CPU. Timing:
``host`` is the wall time of the preprocessor call (what the validation
loop's process spends issuing it; the decoder waits for its own batch),
``total`` the same with the device synchronised after it, both the median
over ``--repeats`` calls on one batch kept in pinned host memory.
"""
import argparse
import copy
import os.path as osp
import statistics
import time

import mmsmlp  # noqa: F401,I001  isort:skip
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, default_collate, pseudo_collate
from mmengine.registry import MODELS, init_default_scope

from mmsmlp.datasets import make_imagenet

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def pinned(batch):
    if not torch.cuda.is_available():
        return batch
    return dict(batch, inputs=[x.pin_memory() for x in batch['inputs']])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='a config of configs/gpudecode/')
    parser.add_argument(
        '--base', default=osp.join(ROOT, 'configs', 'smlpnet',
                                   'smlpnet-t_8xb128_in1k.py'),
        help='the config with the CPU test pipeline (default: sMLPNet-T)')
    parser.add_argument('--data', default='/tmp/gpu_decode_check_data')
    parser.add_argument('--images', type=int, default=256)
    parser.add_argument('--long-side', type=int, nargs=2, default=[400, 500])
    parser.add_argument('--batch', type=int, default=128)
    parser.add_argument('--repeats', type=int, default=20)
    args = parser.parse_args()

    cfg = Config.fromfile(args.config)
    base = Config.fromfile(args.base)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')

    if not osp.exists(osp.join(args.data, 'meta', 'val.txt')):
        make_imagenet(args.data, 10, 1, max(args.images // 10, 1),
                      size=tuple(args.long_side))
    with open(osp.join(args.data, 'meta', 'val.txt')) as f:
        paths = [osp.join(args.data, 'val', line.split()[0]) for line in f]

    pipes = {
        name: Compose(copy.deepcopy(c.test_dataloader.dataset.pipeline))
        for name, c in (('gpu', cfg), ('cpu', base))
    }
    preprocessors = {
        name: MODELS.build(copy.deepcopy(c.data_preprocessor)).to(device)
        for name, c in (('gpu', cfg), ('cpu', base))
    }
    collates = dict(gpu=pseudo_collate, cpu=default_collate)
    std = torch.tensor(cfg.data_preprocessor['std'], device=device)

    diffs, image_means, image_max = [], [], []
    for start in range(0, len(paths), args.batch):
        chunk = paths[start:start + args.batch]
        out = {}
        for name in ('gpu', 'cpu'):
            batch = collates[name]([
                pipes[name](dict(img_path=p, gt_label=0)) for p in chunk
            ])
            out[name] = preprocessors[name](batch, False)['inputs']
        diff = ((out['gpu'] - out['cpu']) * std.view(1, 3, 1, 1)).abs()
        diffs.append(diff.flatten().cpu())
        image_means += diff.mean(dim=(1, 2, 3)).tolist()
        image_max += diff.amax(dim=(1, 2, 3)).tolist()
    diff = torch.cat(diffs)
    print(f'{len(paths)} images on {device}: |GPU path - CPU pipeline| in '
          f'levels: mean {diff.mean():.3f}, max {diff.max():.0f}; '
          f'pixels > 1 level {(diff > 1.001).float().mean() * 100:.2f}%, '
          f'> 2 levels {(diff > 2.001).float().mean() * 100:.3f}%; per '
          f'image mean at most {max(image_means):.3f}, max at most '
          f'{max(image_max):.0f}')

    batch = pinned(pseudo_collate([
        pipes['gpu'](dict(img_path=p, gt_label=0))
        for p in (paths * args.batch)[:args.batch]
    ]))
    host, total = [], []
    for i in range(args.repeats + 3):
        sync()
        start = time.perf_counter()
        preprocessors['gpu'](batch, False)
        issued = time.perf_counter()
        sync()
        done = time.perf_counter()
        if i >= 3:  # warm-up: decoder state, allocator
            host.append(issued - start)
            total.append(done - start)
    host_ms = statistics.median(host) * 1e3
    total_ms = statistics.median(total) * 1e3
    print(f'data preprocessor, batch {args.batch}: host {host_ms:.1f} ms, '
          f'total {total_ms:.1f} ms = '
          f'{args.batch / total_ms * 1e3:.0f} img/s')


if __name__ == '__main__':
    main()

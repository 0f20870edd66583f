# Copyright (c) mmsmlp contributors. All rights reserved.
"""Make a checkpoint ready to share: weights and metadata only, named with
the date and the first 8 hex digits of its sha256, as OpenMMLab publishes
checkpoints.

    python tools/model_converters/publish_model.py \\
        work_dirs/smlpnet-t_8xb128_in1k/epoch_300.pth \\
        checkpoints/smlpnet-t_8xb128_in1k.pth
    # -> checkpoints/smlpnet-t_8xb128_in1k_20261130-1a2b3c4d.pth

mmpretrain's tool of the same name, for torch >= 2.6: the input is read
weights-only (torch's default since 2.6; upstream's tool then fails on the
numpy and mmengine objects a Runner checkpoint holds), with exactly those
data types allowed (``--trust-checkpoint`` for files that need more), and
the output holds nothing but tensors, containers and
plain Python values, so it loads with a bare
``torch.load(path, weights_only=True)`` anywhere (checked before the file is
named).

Kept: ``state_dict`` (with an EMAHook, the EMA weights: mmengine swaps them
in when it saves; ``--no-ema`` takes the raw weights instead) and ``meta``
(its numpy values turned into Python ones). Dropped: optimizer, parameter
schedulers, message hub, hook messages, the EMA copy. Also takes a converted
checkpoint (``spach2mmsmlp.py``) or a bare state dict.
"""
import argparse
import datetime
import hashlib
import os
import os.path as osp
import pickle
from collections import OrderedDict

import numpy as np
import torch

from mmsmlp.compat import load_checkpoint_file

# What a Runner checkpoint holds besides the weights (upstream's list).
TRAINING_STATE = ('optimizer', 'param_schedulers', 'message_hub',
                  'hook_msgs', 'ema_state_dict')


def to_plain(value):
    """``value`` with numpy arrays and scalars turned into Python lists and
    numbers (metadata only: tensors stay tensors)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return type(value)((k, to_plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(v) for v in value)
    return value


def dataset_meta_of(dataset_type: str) -> dict:
    """``METAINFO`` of a registered dataset class: ``ImageNet`` (mmpretrain),
    ``mmdet.CocoDataset``, ``mmseg.ADE20KDataset``, ..."""
    import importlib

    from mmpretrain.registry import DATASETS
    scope = dataset_type.split('.')[0] if '.' in dataset_type else None
    if scope is not None:
        importlib.import_module(f'{scope}.datasets')  # registers its classes
    dataset_class = DATASETS.get(dataset_type)
    if dataset_class is None:
        raise KeyError(f'--dataset-type {dataset_type!r} is not a registered '
                       'dataset (e.g. ImageNet, mmdet.CocoDataset, '
                       'mmseg.ADE20KDataset)')
    return dict(getattr(dataset_class, 'METAINFO', {}))


def process_checkpoint(checkpoint: dict, no_ema: bool = False,
                       dataset_type: str = None) -> dict:
    """The published form of a loaded checkpoint (see the module doc)."""
    if not isinstance(checkpoint, dict):
        raise TypeError(f'a checkpoint is a dict, got {type(checkpoint)}')
    if 'state_dict' not in checkpoint:  # a bare state dict
        if not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            raise KeyError(
                'the checkpoint has no "state_dict" and is not a bare state '
                f'dict either (keys: {sorted(checkpoint)[:10]})')
        checkpoint = dict(state_dict=checkpoint)
    state_dict = OrderedDict(checkpoint['state_dict'])
    ema = checkpoint.get('ema_state_dict')
    if no_ema:
        if ema is None:
            raise KeyError('--no-ema: the checkpoint has no "ema_state_dict" '
                           '(it was not saved with an EMAHook)')
        # mmengine's EMAHook swaps on saving: "state_dict" holds the EMA
        # weights, "ema_state_dict" (under "module.", plus "steps") the raw.
        raw = {k[len('module.'):]: v for k, v in ema.items()
               if k.startswith('module.')}
        unknown = sorted(set(raw) - set(state_dict))
        if unknown:
            raise KeyError(f'ema_state_dict has keys the model has not: '
                           f'{unknown[:5]}')
        state_dict.update(raw)

    meta = to_plain(dict(checkpoint.get('meta') or {}))
    import mmsmlp
    meta.setdefault('mmsmlp_version', mmsmlp.__version__)
    if dataset_type is not None:
        meta['dataset_meta'] = to_plain(dataset_meta_of(dataset_type))
    elif not meta.get('dataset_meta'):
        print('Warning: no dataset meta information (classes); give '
              '--dataset-type to add it')
    return dict(state_dict=state_dict, meta=meta)


def publish(in_file: str, out_file: str, no_ema: bool = False,
            dataset_type: str = None, date: str = None,
            trust: bool = False) -> str:
    """Write the published checkpoint as ``<out_file stem>_<date>-<sha256
    [:8]>.pth`` and return that path."""
    out_dir = osp.dirname(osp.abspath(out_file))
    if not osp.isdir(out_dir):
        raise FileNotFoundError(f'output folder {out_dir} does not exist')
    # weights-only (SafeCheckpointHook's files load as they are) unless
    # `trust` (--trust-checkpoint), with errors naming the file
    published = process_checkpoint(
        load_checkpoint_file(in_file, trust=trust), no_ema=no_ema,
        dataset_type=dataset_type)
    stem = out_file[:-len('.pth')] if out_file.endswith('.pth') else out_file
    tmp = osp.join(out_dir, f'.tmp_{osp.basename(stem)}_{os.getpid()}.pth')
    try:
        torch.save(published, tmp)
        # Whoever downloads it can load it without allowing any type.
        try:
            torch.load(tmp, map_location='cpu', weights_only=True)
        except pickle.UnpicklingError as e:
            raise pickle.UnpicklingError(
                f'the published form of {in_file} would not load weights-'
                f'only: {str(e)[:300]}') from None
        with open(tmp, 'rb') as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        date = date or datetime.datetime.now().strftime('%Y%m%d')
        final = f'{stem}_{date}-{sha[:8]}.pth'
        os.replace(tmp, final)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
    return final


def main():
    parser = argparse.ArgumentParser(
        description='Process a checkpoint to be published')
    parser.add_argument('in_file', help='input checkpoint (a Runner\'s, a '
                        'converted one or a bare state dict)')
    parser.add_argument(
        'out_file',
        help='output name; the date and hash are appended to its stem')
    parser.add_argument(
        '--no-ema',
        action='store_true',
        help='publish the raw weights, not the EMA ones, of a checkpoint '
        'saved with an EMAHook')
    parser.add_argument(
        '--dataset-type',
        help='registered dataset whose METAINFO (class names) goes into '
        'meta.dataset_meta, e.g. ImageNet for converted weights')
    parser.add_argument(
        '--trust-checkpoint',
        action='store_true',
        help='load the input without weights-only safety (needed for '
        'checkpoints of mmengine\'s own CheckpointHook, whose message hub '
        'is pickled through getattr); only for files you trust as code. '
        'The output is weights-only loadable either way')
    args = parser.parse_args()
    final = publish(args.in_file, args.out_file, args.no_ema,
                    args.dataset_type, trust=args.trust_checkpoint)
    print(f'Published {final}')


if __name__ == '__main__':
    main()

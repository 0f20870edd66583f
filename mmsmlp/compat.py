# Copyright (c) mmsmlp contributors. All rights reserved.
"""Keeps the pinned OpenMMLab stack working on current torch and numpy.

Applied once, on ``import mmsmlp`` (which every tool and config of this
project does first). Each fix is tested in ``tests/test_compat.py``.
"""
import math

import mmcv
import mmcv.image.photometric
import numpy as np
import torch
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.utils import digit_version


def _skip_multimodal_models_on_new_transformers():
    """mmpretrain 1.2.0's BLIP code fails to import with transformers >= 4.56,
    and takes ``import mmpretrain.models`` down with it. Register mmpretrain's
    placeholders for its multimodal models instead, as it does itself when
    transformers is missing."""
    import mmpretrain.utils.dependency as dependency
    if dependency.satisfy_requirement('transformers>=4.56.0'):
        dependency.WITH_MULTIMODAL = False


def _load_local_checkpoint(filename, map_location=None):
    """mmengine 0.10.7 loads checkpoints with ``torch.load`` defaults, which
    since torch 2.6 refuse anything but tensors (``weights_only=True``), so it
    cannot resume its own checkpoints (they hold the message hub, the config
    and numpy scalars). Local checkpoints are trusted files the user points
    at, as they were before torch 2.6."""
    import os.path as osp
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False)


def _in1d(ar1, ar2, assume_unique=False, invert=False):
    """``np.in1d`` (removed in numpy 2.4; used by mmpretrain's retrieval
    metrics) as numpy defined it: ``np.isin`` on the flattened input."""
    return np.isin(
        np.ravel(ar1), ar2, assume_unique=assume_unique, invert=invert)


class _CyclicHueFactor(float):
    """A hue factor whose ``factor * 255`` is already wrapped into [0, 256).

    mmcv 2.1.0's ``adjust_hue`` shifts hue by ``np.uint8(factor * 255)``;
    numpy 2 refuses negative values there (OverflowError) where numpy 1
    wrapped them around. Hue is cyclic, so the wrapped value is the same
    shift: this keeps numpy 1's result exactly and calls mmcv's own code."""

    def __mul__(self, other):
        return math.trunc(float(self) * other) % 256


def _wrap_adjust_hue(adjust_hue):

    def adjust_hue_numpy2(img, hue_factor, backend=None):
        return adjust_hue(img, _CyclicHueFactor(hue_factor), backend=backend)

    adjust_hue_numpy2.__wrapped__ = adjust_hue
    adjust_hue_numpy2.__doc__ = adjust_hue.__doc__
    return adjust_hue_numpy2


def apply():
    _skip_multimodal_models_on_new_transformers()
    if digit_version(torch.__version__) >= digit_version('2.6.0'):
        CheckpointLoader.register_scheme(
            prefixes='', loader=_load_local_checkpoint, force=True)
    if not hasattr(np, 'in1d'):
        np.in1d = _in1d
    if not hasattr(mmcv.adjust_hue, '__wrapped__'):
        patched = _wrap_adjust_hue(mmcv.adjust_hue)
        mmcv.adjust_hue = mmcv.image.adjust_hue = patched
        mmcv.image.photometric.adjust_hue = patched

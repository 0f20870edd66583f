# Copyright (c) mmsmlp contributors. All rights reserved.
"""Keeps the pinned OpenMMLab stack working on current torch and numpy, and
closes two of its fault-tolerance gaps (atomic local writes, an error on
checkpoint shape mismatches).

Applied once, on ``import mmsmlp`` (which every tool and config of this
project does first). Each fix is tested in ``tests/test_compat.py``, the
fault-tolerance ones in ``tests/test_fault_tolerance.py``.
"""
import math
import os
import os.path as osp
import re
import uuid

import mmcv
import mmcv.image.photometric
import numpy as np
import torch
from mmengine.fileio.backends import LocalBackend
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmengine.runner import checkpoint as mmengine_checkpoint
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


def fsync_file(path: str) -> None:
    """Flush a written file's data to disk."""
    with open(path, 'rb+') as f:
        os.fsync(f.fileno())


def _atomic_local_write(write):
    """Make ``LocalBackend.put``/``put_text`` atomic: mmengine writes the
    final path in place, so a kill mid-write (e.g. while saving a checkpoint)
    leaves a truncated file. Here mmengine's own method writes a temporary
    file in the same folder, which is fsynced and then renamed over the final
    path (``os.replace``: atomic). A kill leaves at most a hidden
    ``.<name>.<pid>.<random>.tmp`` file next to it, never a partial
    ``<name>``."""

    def atomic_write(self, obj, filepath, *args, **kwargs):
        filepath = str(filepath)
        folder, name = osp.split(filepath)
        tmp = osp.join(folder,
                       f'.{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
        try:
            write(self, obj, tmp, *args, **kwargs)
            fsync_file(tmp)
            os.replace(tmp, filepath)
        except BaseException:
            if osp.exists(tmp):
                os.remove(tmp)
            raise

    atomic_write.__wrapped__ = write
    atomic_write.__doc__ = write.__doc__
    return atomic_write


_SIZE_MISMATCH = re.compile(
    r'size mismatch for (?P<key>\S+): copying a param with shape '
    r'torch\.Size\(\[(?P<ckpt>[^\]]*)\]\) from checkpoint, the shape in '
    r'current model is torch\.Size\(\[(?P<model>[^\]]*)\]\)')


def _shape_mismatches(error_msgs) -> list:
    """``key: checkpoint (a, b) vs model (c, d)`` for each size mismatch that
    PyTorch's ``Module._load_from_state_dict`` reported."""
    found = []
    for msg in error_msgs:
        match = _SIZE_MISMATCH.match(msg)
        if match:
            found.append(f'{match["key"]}: checkpoint ({match["ckpt"]}) vs '
                         f'model ({match["model"]})')
        elif msg.startswith('size mismatch'):
            found.append(msg)
    return found


def _raise_on_shape_mismatch(load_state_dict):
    """mmengine's ``load_state_dict`` (behind ``load_from``, resuming,
    ``load_checkpoint`` and ``init_cfg=dict(type='Pretrained')``) only warns
    when checkpoint tensors have other shapes than the model's, and loads
    the rest: a silently half-loaded model. Here every size mismatch is
    raised together, with both shapes. Missing and unexpected keys still
    only warn (detection and segmentation load classification checkpoints
    without their head).

    The mismatches are PyTorch's own, read from the error list that
    ``_load_from_state_dict`` fills, so they are found after what modules do
    while loading (``SparseMLP`` resamples its weights to its size: not an
    error)."""

    def load_state_dict_checked(module, state_dict, strict=False,
                                logger=None):
        error_lists = []

        def grab_error_list(*args):
            error_lists.append(args[-1])  # the `error_msgs` list

        handles = [
            m.register_load_state_dict_pre_hook(grab_error_list)
            for m in module.modules()
        ]
        try:
            load_state_dict(module, state_dict, strict, logger)
        finally:
            for handle in handles:
                handle.remove()
        mismatches = _shape_mismatches(error_lists[0]) if error_lists else []
        if mismatches:
            raise RuntimeError(
                'The checkpoint does not fit the model: '
                f'{len(mismatches)} tensors have mismatched shapes:\n  ' +
                '\n  '.join(mismatches))

    load_state_dict_checked.__wrapped__ = load_state_dict
    load_state_dict_checked.__doc__ = load_state_dict.__doc__
    return load_state_dict_checked


def _also_remove_checked_loading(remove_transform):
    """mmpretrain's inferencers load images themselves and drop the config's
    ``LoadImageFromFile`` step by its name; make them drop mmsmlp's
    ``CheckedLoadImageFromFile`` (the first step of our pipelines) too."""

    def remove_transform_also_checked(pipeline, target, inplace=False):
        pipeline = remove_transform(pipeline, target, inplace)
        if target == 'LoadImageFromFile':
            pipeline = remove_transform(
                pipeline, 'CheckedLoadImageFromFile', inplace=True)
        return pipeline

    remove_transform_also_checked.__wrapped__ = remove_transform
    remove_transform_also_checked.__doc__ = remove_transform.__doc__
    return remove_transform_also_checked


def _compile_model_forward(runner, target: str) -> None:
    """What ``compile`` in a config does (replaces ``Runner._maybe_compile``).

    mmengine 0.10.7 compiles the model's whole ``train_step``, which pulls
    mmengine's AMP and optimizer code into TorchDynamo: on torch 2.11 with
    ``AmpOptimWrapper`` it fails inside ``mmengine.runner.amp.autocast``
    (``InternalTorchDynamoError`` tracing ``packaging.version``), and the
    learning rate, a Python float changed every iteration by the schedulers,
    would be baked into the optimizer graph. Here the model's ``forward``
    (network and loss) is compiled instead, once, after ``before_run`` (so
    EMA's copy of the model is the plain one), and ``train_step`` runs as
    usual around it. ``compile=True`` uses torch.compile's defaults; a dict
    is passed to it, e.g. ``dict(mode='reduce-overhead')`` (CUDA graphs).
    """
    compile_cfg = runner.cfg.get('compile', None)
    if compile_cfg is None or compile_cfg is False:
        return
    if compile_cfg is True:
        compile_cfg = dict()
    if not isinstance(compile_cfg, dict):
        raise TypeError('`compile` in the config must be a bool or a dict of '
                        f'torch.compile arguments, got {compile_cfg!r}')
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    if getattr(model, '_forward_compiled', False):
        return
    model.forward = torch.compile(model.forward, **compile_cfg)
    model._forward_compiled = True
    runner.logger.info(
        f'Compiled {type(model).__name__}.forward with torch.compile('
        f'{compile_cfg}) for {target}; the first iterations are slow.')


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
    for method in ('put', 'put_text'):
        if not hasattr(getattr(LocalBackend, method), '__wrapped__'):
            setattr(LocalBackend, method,
                    _atomic_local_write(getattr(LocalBackend, method)))
    import mmpretrain.datasets  # after the transformers fix above
    if not hasattr(mmpretrain.datasets.remove_transform, '__wrapped__'):
        mmpretrain.datasets.remove_transform = _also_remove_checked_loading(
            mmpretrain.datasets.remove_transform)
    Runner._maybe_compile = _compile_model_forward
    if not hasattr(mmengine_checkpoint.load_state_dict, '__wrapped__'):
        mmengine_checkpoint.load_state_dict = _raise_on_shape_mismatch(
            mmengine_checkpoint.load_state_dict)

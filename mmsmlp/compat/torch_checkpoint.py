# Copyright (c) mmsmlp contributors. All rights reserved.
"""mmengine 0.10.x checkpoints on torch >= 2.6, loaded weights-only.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: it
unpickles tensors, containers and primitive types only, so a checkpoint
cannot run code. mmengine 0.10.7 calls ``torch.load`` with that default,
but the checkpoints its Runner writes hold more: the message hub's
``HistoryBuffer`` objects (pickled with references to their methods,
through ``getattr``), numpy arrays and numpy scalars. torch refuses them,
and ``--resume`` fails. Allow-listing ``getattr`` would open the door this
default closes, so instead the project's checkpoint hook
(``SafeCheckpointHook``) writes those values as plain data
(:func:`to_plain_data`: tensors, numbers, tagged dicts) and turns them back
when a checkpoint is loaded (:func:`from_plain_data`). Its checkpoints load
weights-only with no allow-list, in any process, with or without mmsmlp.

Files that need more (checkpoints written by mmengine's own
``CheckpointHook``, pickles with other classes) load only through the
explicit opt-in :func:`trust_checkpoints` (``--trust-checkpoint`` of the
project's tools), which warns.
"""
import os
import pickle
import warnings
import zipfile
from collections import OrderedDict
from contextlib import contextmanager
from typing import Optional

import numpy as np
import torch

_HISTORY_BUFFER = '__mmengine.HistoryBuffer__'
_NDARRAY = '__numpy.ndarray__'


def to_plain_data(obj):
    """``obj`` with mmengine's ``HistoryBuffer`` objects and numpy arrays
    as tagged dicts of tensors and numpy scalars as Python numbers, through
    dicts, lists and tuples. Everything else is returned as it is."""
    from mmengine.logging import HistoryBuffer
    if isinstance(obj, HistoryBuffer):
        log_history, count_history = obj.data
        return {
            _HISTORY_BUFFER: True,
            'max_length': obj.max_length,
            'log_history': torch.from_numpy(np.array(log_history)),
            'count_history': torch.from_numpy(np.array(count_history)),
        }
    if isinstance(obj, np.ndarray) and obj.dtype != object:
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(obj))}
    if isinstance(obj, np.generic):
        return obj.item()
    if type(obj) in (dict, OrderedDict):
        return type(obj)((k, to_plain_data(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)) and not hasattr(obj, '_fields'):
        return type(obj)(to_plain_data(v) for v in obj)
    return obj


def from_plain_data(obj):
    """The inverse of :func:`to_plain_data` (numpy scalars come back as
    Python numbers). The tensors may be on a GPU: mmengine's ``resume``
    loads a checkpoint onto the training device."""
    from mmengine.logging import HistoryBuffer
    if type(obj) in (dict, OrderedDict):
        if obj.get(_HISTORY_BUFFER) is True:
            return HistoryBuffer(obj['log_history'].cpu().numpy(),
                                 obj['count_history'].cpu().numpy(),
                                 obj['max_length'])
        if set(obj) == {_NDARRAY}:
            return obj[_NDARRAY].cpu().numpy()
        return type(obj)((k, from_plain_data(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)) and not hasattr(obj, '_fields'):
        return type(obj)(from_plain_data(v) for v in obj)
    return obj


# torch.load reads this variable on each call: with it set, a load that
# does not pass `weights_only` (mmengine's) unpickles anything.
_TRUST_VARIABLE = 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'


@contextmanager
def trust_checkpoints(why: str = 'asked for'):
    """Load checkpoints with pickle's full power inside the block.

    Only for files you trust as you would trust code: a checkpoint is a
    pickle and can run any command while it loads. Warns once per use.
    """
    warnings.warn(
        f'Loading checkpoints without weights-only safety ({why}): a '
        'checkpoint can run arbitrary code while it loads. Use this only for '
        'files you trust.', stacklevel=3)
    old = os.environ.get(_TRUST_VARIABLE)
    os.environ[_TRUST_VARIABLE] = '1'
    try:
        yield
    finally:
        if old is None:
            del os.environ[_TRUST_VARIABLE]
        else:
            os.environ[_TRUST_VARIABLE] = old


def describe_unloadable(path: str) -> Optional[str]:
    """Why ``path`` is not a torch checkpoint at all (empty, truncated,
    another kind of file), or None if it looks like one. Reads the file's
    zip directory or its first bytes only."""
    if os.path.getsize(path) == 0:
        return 'the file is empty'
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                if not any(n.endswith('data.pkl') for n in zf.namelist()):
                    return 'a zip file, but not one torch.save wrote'
        except zipfile.BadZipFile as e:
            return f'a damaged zip file ({e})'
        return None
    with open(path, 'rb') as f:
        head = f.read(2)
    if head[:1] == b'\x80' and head[1:2] in (b'\x02', b'\x03', b'\x04',
                                              b'\x05'):
        return None  # a legacy (torch < 1.6, not zip) torch file
    if head[:2] == b'PK':
        return 'a truncated zip file (its directory at the end is missing)'
    return 'not a torch checkpoint (neither a zip file nor a pickle)'


def load_checkpoint_file(path: str,
                         map_location='cpu',
                         trust: bool = False,
                         extra_globals=()):
    """``torch.load`` for the project's tools, with errors that name the
    file: weights-only (with the data-only classes in ``extra_globals``
    allowed for this load) unless ``trust``; a damaged or foreign file and a
    pickle holding other types are reported with what to do. Plain data
    written by :func:`to_plain_data` is turned back."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} not found')
    problem = describe_unloadable(path)
    if problem:
        raise ValueError(f'{path} is not a checkpoint (truncated?): '
                         f'{problem}')
    if trust:
        with trust_checkpoints(f'--trust-checkpoint for {path}'):
            return torch.load(path, map_location=map_location,
                              weights_only=False)
    try:
        with torch.serialization.safe_globals(list(extra_globals)):
            checkpoint = torch.load(
                path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        cause = [
            line.strip() for line in str(e).splitlines()
            if 'Unsupported global' in line or 'Unsupported operand' in line
        ]
        raise pickle.UnpicklingError(
            f'{path} holds objects that weights-only loading refuses, which '
            'could run code while loading (' +
            (cause[0] if cause else str(e)[-300:]) + '). A checkpoint of '
            "mmengine's own CheckpointHook holds its message hub's "
            'HistoryBuffers, pickled through getattr. If you trust the file '
            'as you would trust a program, pass --trust-checkpoint.') from None
    except (EOFError, RuntimeError) as e:
        raise ValueError(f'{path} is not a checkpoint (truncated?): '
                         f'{type(e).__name__}: {e}') from None
    return from_plain_data(checkpoint)

# Copyright (c) mmsmlp contributors. All rights reserved.
"""mmengine 0.10.x checkpoints on torch >= 2.6, loaded weights-only.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: it
unpickles tensors, containers and primitive types only, so a checkpoint
cannot run code. mmengine 0.10.7 calls ``torch.load`` with that default,
and the checkpoints its Runner writes hold a few more *data* types (the
message hub's ``HistoryBuffer`` with numpy arrays, numpy scalars in the
logged values, numpy's random state): torch refuses them, and
``--resume`` fails. :func:`allow_mmengine_checkpoints` (run by ``import
mmsmlp``) adds exactly those types to torch's allow-list
(``torch.serialization.add_safe_globals``). None of them can run code, and
a pickle that calls anything else (``os.system``, ...) is still refused.

Files that need more (checkpoints pickled with arbitrary classes, e.g. an
``argparse.Namespace`` of training arguments) load only through the
explicit opt-in :func:`trust_checkpoints` (``--trust-checkpoint`` of the
project's tools), which warns.
"""
import os
import pickle
import warnings
import zipfile
from contextlib import contextmanager
from typing import Optional

import numpy as np
import torch


def _numpy_globals() -> list:
    """What pickled numpy arrays, scalars and dtypes reference, under the
    module names of the installed numpy (``numpy.core`` became
    ``numpy._core`` in numpy 2)."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    dtype_classes = [type(np.dtype(t)) for t in np.sctypeDict.values()]
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype
            ] + sorted(set(dtype_classes), key=lambda c: c.__name__)


def _mmengine_globals() -> list:
    from mmengine.logging import HistoryBuffer
    return [HistoryBuffer]


MMENGINE_CHECKPOINT_GLOBALS = _numpy_globals() + _mmengine_globals()


def allow_mmengine_checkpoints() -> None:
    """Allow the data types of mmengine's checkpoints in weights-only
    loading (torch >= 2.4 has the allow-list; older torch loads everything
    without it)."""
    if hasattr(torch.serialization, 'add_safe_globals'):
        torch.serialization.add_safe_globals(MMENGINE_CHECKPOINT_GLOBALS)


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
    directory (zip) or its first bytes only."""
    size = os.path.getsize(path)
    if size == 0:
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
        return None  # a legacy (pre-1.6, not zip) torch file
    if head[:2] == b'PK':
        return 'a truncated zip file (its directory at the end is missing)'
    return 'not a torch checkpoint (neither a zip file nor a pickle)'


def load_checkpoint_file(path: str,
                         map_location='cpu',
                         trust: bool = False,
                         extra_globals=()):
    """``torch.load`` for the project's tools, with errors that name the
    file: weights-only (with the types of :func:`allow_mmengine_checkpoints`
    and the data-only classes in ``extra_globals``) unless ``trust``; a
    damaged or foreign file and a pickle holding other types are reported
    with what to do."""
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} not found')
    problem = describe_unloadable(path)
    if problem:
        raise ValueError(f'{path} is not a checkpoint (truncated?): '
                         f'{problem}')
    allow_mmengine_checkpoints()
    if trust:
        with trust_checkpoints(f'--trust-checkpoint for {path}'):
            return torch.load(path, map_location=map_location,
                              weights_only=False)
    try:
        with torch.serialization.safe_globals(list(extra_globals)):
            return torch.load(
                path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise pickle.UnpicklingError(
            f'{path} holds objects that weights-only loading refuses, which '
            'could run code while loading. If you trust the file as you would '
            'trust a program, pass --trust-checkpoint. torch said: ' +
            str(e).split('\n\n')[0][:500]) from None
    except (EOFError, RuntimeError) as e:
        raise ValueError(f'{path} is not a checkpoint (truncated?): '
                         f'{type(e).__name__}: {e}') from None

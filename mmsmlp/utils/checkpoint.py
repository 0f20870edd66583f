# Copyright (c) mmsmlp contributors. All rights reserved.
"""Does a checkpoint fit a model? Checked by ``tools/test.py`` before it
evaluates, so that weights that do not belong to the model are an error,
not a random-weights score."""
import re
import warnings
from typing import Dict

import torch
from torch import nn

CONVERT_HINT = ('An official sMLPNet checkpoint (smlp_s.pth, smlp_b.pth) '
                'must be converted first: python '
                'tools/model_converters/spach2mmsmlp.py SRC DST')

_SIZE_MISMATCH = re.compile(
    r'size mismatch for (?P<key>\S+): copying a param with shape '
    r'torch\.Size\(\[(?P<ckpt>[^\]]*)\]\) from checkpoint, the shape in '
    r'current model is torch\.Size\(\[(?P<model>[^\]]*)\]\)')


def model_state_dict(checkpoint) -> Dict[str, torch.Tensor]:
    """The model weights of a loaded checkpoint as mmengine reads them: its
    ``state_dict`` entry (or the whole dict), without DDP's ``module.``
    prefix."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    return {re.sub(r'^module\.', '', k): v for k, v in state_dict.items()}


def _shape_mismatches(model: nn.Module, state_dict: dict) -> list:
    """``key: checkpoint (a, b) vs model (c, d)`` for each tensor PyTorch
    refuses to copy into ``model``. Modules' own loading runs first
    (``SparseMLP`` resamples its axial weights to its size: not a
    mismatch). Loads the fitting tensors into ``model`` as a side effect."""
    try:
        nn.Module.load_state_dict(model, state_dict, strict=False)
    except RuntimeError as e:
        found = [
            f'{m["key"]}: checkpoint ({m["ckpt"]}) vs model ({m["model"]})'
            for m in _SIZE_MISMATCH.finditer(str(e))
        ]
        if not found:
            raise
        return found
    return []


def check_checkpoint(model: nn.Module, checkpoint, filename: str,
                     allow_partial: bool = False) -> None:
    """Raise ``ValueError`` when ``checkpoint`` (a loaded dict) does not fit
    ``model``: none of its tensors match the model's names (e.g. an
    unconverted official checkpoint, another network), or, unless
    ``allow_partial``, some of the model's tensors are missing or have other
    shapes. Tensors the model does not have only warn. The message names
    ``filename``, the counts and what to do.
    """
    state_dict = model_state_dict(checkpoint)
    model_keys = list(model.state_dict())
    matched = [k for k in model_keys if k in state_dict]
    if not matched:
        some = ', '.join(list(state_dict)[:3])
        raise ValueError(
            f'None of the {len(state_dict)} tensors in {filename} matches the '
            f'{len(model_keys)} of the model (checkpoint: {some}, ...; '
            f'model: {", ".join(model_keys[:3])}, ...). {CONVERT_HINT}')
    missing = [k for k in model_keys if k not in state_dict]
    mismatched = _shape_mismatches(
        model, {k: state_dict[k]
                for k in matched})
    unexpected = [k for k in state_dict if k not in set(model_keys)]
    if unexpected:
        warnings.warn(f'{filename}: {len(unexpected)} tensors the model does '
                      f'not have are ignored: {", ".join(unexpected[:5])}')
    if not (missing or mismatched):
        return
    problems = []
    if missing:
        problems.append(f'{len(missing)} model tensors missing from it '
                        f'({", ".join(missing[:5])}'
                        f'{", ..." if len(missing) > 5 else ""})')
    if mismatched:
        problems.append(f'{len(mismatched)} with other shapes:\n  ' +
                        '\n  '.join(mismatched))
    summary = (f'{filename} fits the model only in part: '
               f'{len(matched) - len(mismatched)} of {len(model_keys)} '
               f'tensors load; ' + '; '.join(problems))
    if not allow_partial:
        raise ValueError(
            f'{summary}\nIs it a checkpoint of this config (depths, widths, '
            f'number of classes)? Pass --allow-partial to evaluate anyway.')
    warnings.warn(summary)

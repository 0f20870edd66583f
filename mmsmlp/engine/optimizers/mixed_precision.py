# Copyright (c) mmsmlp contributors. All rights reserved.
"""Mixed precision in the best dtype the machine has."""
from typing import Optional, Union

import torch
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS

DTYPES = ('auto', 'bfloat16', 'float16', 'float32')


def resolve_amp_dtype(dtype: str = 'auto') -> str:
    """``'auto'``: ``'bfloat16'`` on a CUDA GPU that supports it (Ampere and
    newer), ``'float16'`` on an older CUDA GPU, ``'float32'`` without CUDA
    (CPU autocast is slow on most CPUs, so a CPU run stays in fp32). Other
    values are returned as they are."""
    if dtype not in DTYPES:
        raise ValueError(f'MixedPrecisionOptimWrapper: dtype {dtype!r} is '
                         f'not one of {DTYPES}')
    if dtype != 'auto':
        return dtype
    if not torch.cuda.is_available():
        return 'float32'
    return 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'


@OPTIM_WRAPPERS.register_module()
def MixedPrecisionOptimWrapper(  # noqa: N802  (a registry type name)
        dtype: str = 'auto',
        loss_scale: Optional[Union[str, float, dict]] = None,
        **kwargs) -> OptimWrapper:
    """Builds mmengine's ``AmpOptimWrapper`` in the dtype
    :func:`resolve_amp_dtype` picks when the optimizer wrapper is built (on
    the training machine), or a plain ``OptimWrapper`` (fp32) where that is
    ``'float32'``.

    The official training script uses AMP (``torch.cuda.amp.autocast`` with
    fp16 and a dynamic ``GradScaler``). Here bf16 is used where the GPU has
    it: fp32's exponent range, so no loss scaling is needed; fp16 gets
    dynamic loss scaling.

    Args:
        dtype (str): ``'auto'`` (default), ``'bfloat16'``, ``'float16'`` or
            ``'float32'``.
        loss_scale: ``AmpOptimWrapper``'s ``loss_scale``. Defaults to
            ``'dynamic'`` for fp16 and to no scaling
            (``dict(enabled=False)``) for bf16.
        **kwargs: ``OptimWrapper``'s arguments (``optimizer``,
            ``clip_grad``, ``accumulative_counts``).
    """
    resolved = resolve_amp_dtype(dtype)
    note = ' (plain OptimWrapper)' if resolved == 'float32' else ''
    print_log(f'MixedPrecisionOptimWrapper: dtype {dtype!r} -> {resolved}'
              f'{note}', 'current')
    if resolved == 'float32':
        return OptimWrapper(**kwargs)  # loss_scale has no meaning here
    if loss_scale is None:
        loss_scale = ('dynamic'
                      if resolved == 'float16' else dict(enabled=False))
    return AmpOptimWrapper(loss_scale=loss_scale, dtype=resolved, **kwargs)

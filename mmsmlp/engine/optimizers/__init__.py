# Copyright (c) mmsmlp contributors. All rights reserved.
from .mixed_precision import MixedPrecisionOptimWrapper, resolve_amp_dtype
from .skip_non_finite_optim_wrapper import SkipNonFiniteOptimWrapper

__all__ = [
    'MixedPrecisionOptimWrapper', 'SkipNonFiniteOptimWrapper',
    'resolve_amp_dtype'
]

# Copyright (c) mmsmlp contributors. All rights reserved.
from .grouped_constructor import (GroupedOptimWrapperConstructor,
                                  merge_param_groups)
from .mixed_precision import MixedPrecisionOptimWrapper, resolve_amp_dtype
from .skip_non_finite_optim_wrapper import SkipNonFiniteOptimWrapper

__all__ = [
    'GroupedOptimWrapperConstructor', 'MixedPrecisionOptimWrapper',
    'SkipNonFiniteOptimWrapper', 'merge_param_groups', 'resolve_amp_dtype'
]

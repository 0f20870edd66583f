# Copyright (c) mmsmlp contributors. All rights reserved.
from .grouped_constructor import (GroupedOptimWrapperConstructor,
                                  merge_param_groups)
from .skip_non_finite_optim_wrapper import SkipNonFiniteOptimWrapper

__all__ = [
    'GroupedOptimWrapperConstructor', 'SkipNonFiniteOptimWrapper',
    'merge_param_groups'
]

# Copyright (c) mmsmlp contributors. All rights reserved.
from .skip_non_finite_optim_wrapper import SkipNonFiniteOptimWrapper

__all__ = ['SkipNonFiniteOptimWrapper']

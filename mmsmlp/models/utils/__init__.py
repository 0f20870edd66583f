# Copyright (c) mmsmlp contributors. All rights reserved.
from .sparse_mlp import SparseMLP, resample_axial_mixing

__all__ = ['SparseMLP', 'resample_axial_mixing']

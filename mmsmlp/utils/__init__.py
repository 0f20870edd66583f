# Copyright (c) mmsmlp contributors. All rights reserved.
from .checks import check_data_paths

__all__ = ['check_data_paths']

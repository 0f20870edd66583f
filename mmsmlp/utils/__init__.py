# Copyright (c) mmsmlp contributors. All rights reserved.
from .checkpoint import check_checkpoint, model_state_dict
from .checks import check_data_paths

__all__ = ['check_checkpoint', 'check_data_paths', 'model_state_dict']

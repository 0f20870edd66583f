# Copyright (c) mmsmlp contributors. All rights reserved.
from .checkpoint import check_checkpoint, model_state_dict
from .checks import (check_config, check_data_paths, check_hook_options,
                     check_schedule, check_top_level_keys)
from .work_dir import claim_work_dir, lock_training

__all__ = [
    'check_checkpoint', 'check_config', 'check_data_paths',
    'check_hook_options', 'check_schedule', 'check_top_level_keys',
    'claim_work_dir', 'lock_training', 'model_state_dict'
]

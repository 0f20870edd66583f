# Copyright (c) mmsmlp contributors. All rights reserved.
import mmcv
from mmengine.utils import digit_version

from .version import __version__

MMCV_VERSION = '2.1.0'  # mmdet 3.3.0 and mmseg 1.2.2 refuse mmcv >= 2.2
if digit_version(mmcv.__version__) != digit_version(MMCV_VERSION):
    raise ImportError(
        f'mmsmlp needs mmcv=={MMCV_VERSION} (found {mmcv.__version__}); '
        'install it with `bash tools/install.sh`.')

from . import compat  # noqa: E402

compat.apply()

from .models import *  # noqa: E402,F401,F403

__all__ = ['__version__']

# Copyright (c) mmsmlp contributors. All rights reserved.
import warnings

# mmengine 0.10.7 imports pkg_resources (hence setuptools<82), which warns
# on every start; the warning is not actionable for users.
warnings.filterwarnings(
    'ignore', message='pkg_resources is deprecated', category=UserWarning)

import mmcv  # noqa: E402
from mmengine.utils import digit_version  # noqa: E402

from .version import __version__  # noqa: E402

MMCV_VERSION = '2.1.0'  # mmdet 3.3.0 and mmseg 1.2.2 refuse mmcv >= 2.2
if digit_version(mmcv.__version__) != digit_version(MMCV_VERSION):
    raise ImportError(
        f'mmsmlp needs mmcv=={MMCV_VERSION} (found {mmcv.__version__}); '
        'install it with `bash tools/install.sh`.')

from . import compat  # noqa: E402

compat.apply()

from .models import *  # noqa: E402,F401,F403
from . import datasets, engine  # noqa: E402,F401  (hooks, transforms)

__all__ = ['__version__']

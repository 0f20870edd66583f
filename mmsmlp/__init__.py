# Copyright (c) mmsmlp contributors. All rights reserved.
"""Importing mmsmlp registers its modules (SMLPNet, its data preprocessor,
hooks, datasets, transforms, metrics) in the OpenMMLab registries, its model
index in mmpretrain's ``ModelHub`` and, where transformers is too new for
mmpretrain 1.2.0, mmpretrain's multimodal placeholders (see
:mod:`mmsmlp.compat`). It changes nothing else in other libraries."""
import warnings

# mmengine 0.10.7 imports pkg_resources (hence setuptools<82), which warns
# on every start; the warning is not actionable for users.
warnings.filterwarnings(
    'ignore', message='pkg_resources is deprecated', category=UserWarning)

import mmcv  # noqa: E402
from mmengine.utils import digit_version  # noqa: E402

from .version import __version__  # noqa: E402

# The range mmdet 3.3.0 and mmseg 1.2.2 accept (they refuse mmcv >= 2.2).
MMCV_MIN, MMCV_MAX = '2.0.0rc4', '2.2.0'
if not (digit_version(MMCV_MIN) <= digit_version(mmcv.__version__) <
        digit_version(MMCV_MAX)):
    raise ImportError(
        f'mmsmlp needs {MMCV_MIN} <= mmcv < {MMCV_MAX} (found '
        f'{mmcv.__version__}); install it with `bash tools/install.sh`.')

from . import compat  # noqa: E402

compat.skip_multimodal_models_on_new_transformers()

from .models import *  # noqa: E402,F401,F403
from . import apis, datasets, engine, evaluation  # noqa: E402,F401  (model index, hooks, transforms, metrics)

__all__ = ['__version__']

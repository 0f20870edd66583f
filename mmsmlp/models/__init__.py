# Copyright (c) mmsmlp contributors. All rights reserved.
from .backbones import *  # noqa: F401,F403
from .batch_augments import AsyncCutMix, AsyncMixup  # noqa: F401
from .data_preprocessor import (BatchedClsDataPreprocessor,  # noqa: F401
                                GPUAugClsDataPreprocessor)
from .utils import *  # noqa: F401,F403

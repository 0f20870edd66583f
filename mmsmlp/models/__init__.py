# Copyright (c) mmsmlp contributors. All rights reserved.
from .backbones import *  # noqa: F401,F403
from .data_preprocessor import BatchedClsDataPreprocessor  # noqa: F401
from .jpeg_decode_preprocessor import JPEGDecodeDataPreprocessor  # noqa: F401
from .utils import *  # noqa: F401,F403

# Copyright (c) mmsmlp contributors. All rights reserved.
from .backbones import *  # noqa: F401,F403
from .data_preprocessor import (BatchedClsDataPreprocessor,  # noqa: F401
                                GPUAugClsDataPreprocessor)
from .jpeg_decode_preprocessor import (GPUDataPreprocessor,  # noqa: F401
                                       JPEGDecodeDataPreprocessor)
from .utils import *  # noqa: F401,F403

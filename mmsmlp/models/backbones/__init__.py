# Copyright (c) mmsmlp contributors. All rights reserved.
from mmpretrain.registry import MODELS

from .smlpnet import SMLPNet

# One class, registered where each codebase looks for backbones: configs say
# `type='SMLPNet'` under default_scope mmpretrain, mmdet or mmseg alike.
MODELS.register_module(module=SMLPNet)
try:
    from mmdet.registry import MODELS as MMDET_MODELS
    MMDET_MODELS.register_module(module=SMLPNet)
except ImportError:  # mmdet is optional for classification
    pass
try:
    from mmseg.registry import MODELS as MMSEG_MODELS
    MMSEG_MODELS.register_module(module=SMLPNet)
except ImportError:  # mmseg is optional for classification
    pass

__all__ = ['SMLPNet']

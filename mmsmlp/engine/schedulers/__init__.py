# Copyright (c) mmsmlp contributors. All rights reserved.
from .timm_cosine_lr import TimmCosineLR, timm_cosine_lr

__all__ = ['TimmCosineLR', 'timm_cosine_lr']

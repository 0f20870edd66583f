# Copyright (c) mmsmlp contributors. All rights reserved.
from .official_smlpnet import OfficialSMLPNet

__all__ = ['OfficialSMLPNet']

# Copyright (c) mmsmlp contributors. All rights reserved.
from .flat_reduce_ddp import FlatReduceDDP

__all__ = ['FlatReduceDDP']

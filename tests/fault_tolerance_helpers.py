# Copyright (c) mmsmlp contributors. All rights reserved.
"""Imported by configs of tests/test_fault_tolerance.py (custom_imports)."""
from mmengine.logging import MessageHub
from mmpretrain.models.losses import CrossEntropyLoss
from mmpretrain.registry import MODELS


@MODELS.register_module()
class NaNAtIterationLoss(CrossEntropyLoss):
    """Cross-entropy that is NaN at the given (1-based) training iterations,
    as a diverging run would be."""

    def __init__(self, nan_iterations=(), **kwargs):
        super().__init__(**kwargs)
        self.nan_iterations = tuple(nan_iterations)

    def forward(self, *args, **kwargs):
        loss = super().forward(*args, **kwargs)
        iteration = MessageHub.get_current_instance().get_info('iter') + 1
        return loss * float('nan') if iteration in self.nan_iterations \
            else loss

# Copyright (c) mmsmlp contributors. All rights reserved.
"""mmpretrain's Mixup and CutMix without a host synchronisation.

mmpretrain 1.2.0 draws the batch permutation on the CPU
(``torch.randperm(batch_size)``) and indexes the GPU batch with it: each
index is copied to the GPU by a blocking copy, so the host waits for every
kernel queued before (the previous iteration's backward and optimizer step)
and the GPU then idles while the host prepares the rest of the iteration.
Here the same permutation (same random draws, same formulas) goes to the
device once, from pinned memory, without waiting.
"""
import numpy as np
import torch
from mmpretrain.models.utils.batch_augments import CutMix, Mixup
from mmpretrain.registry import BATCH_AUGMENTS


def _permutation(batch_size: int, device: torch.device) -> torch.Tensor:
    """mmpretrain's ``torch.randperm(batch_size)`` (CPU generator), on
    ``device``: a queued copy from pinned memory (PyTorch's pinned-memory
    allocator keeps the block until the copy is done)."""
    index = torch.randperm(batch_size)
    if device.type == 'cuda':
        index = index.pin_memory().to(device, non_blocking=True)
    return index


def _draws(augment, batch_inputs: torch.Tensor):
    """mmpretrain's draws for one batch: ``lam`` (numpy), the permutation
    (torch's CPU generator), the latter on the batch's device."""
    lam = np.random.beta(augment.alpha, augment.alpha)
    return lam, _permutation(batch_inputs.size(0), batch_inputs.device)


@BATCH_AUGMENTS.register_module()
class AsyncMixup(Mixup):
    """mmpretrain's :class:`Mixup` (same arguments, random draws and
    outputs), the permutation moved to the batch's device without a host
    synchronisation."""

    def mix(self, batch_inputs: torch.Tensor, batch_scores: torch.Tensor):
        lam, index = _draws(self, batch_inputs)
        mixed_inputs = lam * batch_inputs + (1 - lam) * batch_inputs[index, :]
        mixed_scores = lam * batch_scores + (1 - lam) * batch_scores[index, :]
        return mixed_inputs, mixed_scores


@BATCH_AUGMENTS.register_module()
class AsyncCutMix(CutMix):
    """mmpretrain's :class:`CutMix` (same arguments, random draws, box and
    outputs), the permutation moved to the batch's device without a host
    synchronisation."""

    def mix(self, batch_inputs: torch.Tensor, batch_scores: torch.Tensor):
        lam, index = _draws(self, batch_inputs)
        (y1, y2, x1, x2), lam = self.cutmix_bbox_and_lam(
            batch_inputs.shape[-2:], lam)
        batch_inputs[:, :, y1:y2, x1:x2] = batch_inputs[index, :, y1:y2, x1:x2]
        mixed_scores = lam * batch_scores + (1 - lam) * batch_scores[index, :]
        return batch_inputs, mixed_scores

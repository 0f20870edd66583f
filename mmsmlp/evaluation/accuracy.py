# Copyright (c) mmsmlp contributors. All rights reserved.
from typing import Sequence

import torch
from mmpretrain.evaluation.metrics import Accuracy
from mmpretrain.registry import METRICS


@METRICS.register_module()
class BatchedAccuracy(Accuracy):
    """mmpretrain's :class:`Accuracy` (same options, results and metrics)
    with each batch copied to the host in two transfers.

    mmpretrain 1.2.0's ``Accuracy.process`` calls ``.cpu()`` on every
    sample's score and label: two device-to-host copies per image, each of
    which waits for the GPU, 256 per batch of 128 in the validation loop.
    Here the batch's scores (or predicted labels) and its labels are stacked
    on the device and copied once each; every sample's result is then the
    same tensor upstream stores.
    """

    def process(self, data_batch, data_samples: Sequence[dict]):
        if not data_samples:
            return
        key = 'pred_score' if 'pred_score' in data_samples[0] else 'pred_label'
        preds = torch.stack([sample[key] for sample in data_samples]).cpu()
        labels = [sample['gt_label'] for sample in data_samples]
        # a sample may hold several labels: split by each one's length
        sizes = [label.numel() for label in labels]
        labels = torch.cat([label.reshape(-1) for label in labels]).cpu()
        for pred, label in zip(preds, labels.split(sizes)):
            # clones: each result owns its memory, as upstream's .cpu() copies
            self.results.append({key: pred.clone(), 'gt_label': label.clone()})

# Copyright (c) mmsmlp contributors. All rights reserved.
from typing import Sequence

import torch
from mmpretrain.evaluation.metrics import Accuracy
from mmpretrain.registry import METRICS


@METRICS.register_module()
class BatchedAccuracy(Accuracy):
    """mmpretrain's :class:`Accuracy` (same options, results and metrics)
    with each batch copied to the host in two transfers that the host does
    not wait for.

    mmpretrain 1.2.0's ``Accuracy.process`` calls ``.cpu()`` on every
    sample's score and label: two device-to-host copies per image, each of
    which waits for the GPU, 256 per batch of 128 in the validation loop.
    Here the batch's scores (or predicted labels) and its labels are stacked
    on the device and copied once each, into pinned memory without
    waiting; the batch's results (for every sample the same tensor
    upstream stores) are stored when the next batch is processed, or at
    :meth:`evaluate`, by when the copy is done. So the loop never waits for
    the GPU: the host prepares the next batches while it computes (a
    blocking copy per batch left it idle while the host did this batch's
    per-sample work and the next batch's launches). Reading
    :attr:`results` stores the pending batch first.
    """

    _pending = None

    @property
    def results(self) -> list:
        """The stored results, the last processed batch's included (read by
        ``evaluate`` and by wrappers such as mmpretrain's
        ``MultiTasksMetric``)."""
        self.flush()
        return self._results

    @results.setter
    def results(self, value: list) -> None:
        self._results = value
        self._pending = None

    def process(self, data_batch, data_samples: Sequence[dict]):
        if not data_samples:
            return
        key = 'pred_score' if 'pred_score' in data_samples[0] else 'pred_label'
        preds = torch.stack([sample[key] for sample in data_samples])
        labels = [sample['gt_label'] for sample in data_samples]
        # a sample may hold several labels: split by each one's length
        sizes = [label.numel() for label in labels]
        labels = torch.cat([label.reshape(-1) for label in labels])
        cuda = [t.device for t in (preds, labels) if t.is_cuda]
        preds = preds.to('cpu', non_blocking=bool(cuda))
        labels = labels.to('cpu', non_blocking=bool(cuda))
        copied = None
        if cuda:
            # the copies were queued on that device's current stream
            copied = torch.cuda.Event()
            copied.record(torch.cuda.current_stream(cuda[0]))
        self.flush()
        self._pending = (key, preds, labels, sizes, copied)

    def flush(self) -> None:
        """Store the last processed batch's results (waiting for its copy
        if it is not done yet)."""
        if self._pending is None:
            return
        key, preds, labels, sizes, copied = self._pending
        self._pending = None
        if copied is not None:
            copied.synchronize()
        for pred, label in zip(preds, labels.split(sizes)):
            # clones: each result owns its memory, as upstream's .cpu() copies
            self._results.append(
                {key: pred.clone(), 'gt_label': label.clone()})

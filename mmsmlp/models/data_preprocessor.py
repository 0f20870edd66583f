# Copyright (c) mmsmlp contributors. All rights reserved.
import torch
import torch.nn.functional as F
from mmpretrain.models.utils.data_preprocessor import ClsDataPreprocessor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample


@MODELS.register_module()
class BatchedClsDataPreprocessor(ClsDataPreprocessor):
    """mmpretrain's :class:`ClsDataPreprocessor` (same options, same
    outputs), making a single-label batch's one-hot labels in one op.

    Before Mixup/CutMix, mmpretrain 1.2.0 turns the labels into one-hot
    scores sample by sample: a ``sum`` and then a ``stack`` over the batch,
    about 130 kernel launches per batch of 128 on the GPU, in an eager
    training step that is bound by the host issuing ops. When every sample
    holds exactly one label (ImageNet), the sum over a sample's single row is
    that row, so ``F.one_hot`` of the batch's labels is the same tensor.
    Other batches (several labels per sample, given scores, no labels) take
    upstream's code unchanged.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        samples = data.get('data_samples', None)
        if not (self.to_onehot and samples
                and isinstance(samples[0], DataSample)
                and 'gt_label' in samples[0]
                and 'gt_score' not in samples[0]):
            return super().forward(data, training)
        labels = [sample.gt_label for sample in samples]
        num_classes = self.num_classes or samples[0].get('num_classes')
        if num_classes is None or any(label.numel() != 1 for label in labels):
            return super().forward(data, training)

        # normalisation, RGB order, padding: upstream's, on the images alone
        inputs = super().forward({'inputs': data['inputs']}, False)['inputs']
        batch_label = torch.cat(labels).to(self.device)
        batch_score = F.one_hot(batch_label, num_classes)
        if training and self.batch_augments is not None:
            inputs, batch_score = self.batch_augments(inputs, batch_score)
        for sample, label, score in zip(samples, batch_label.split(1),
                                        batch_score):
            sample.set_gt_label(label)
            sample.set_gt_score(score)
        return {'inputs': inputs, 'data_samples': samples}

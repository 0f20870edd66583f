# Copyright (c) mmsmlp contributors. All rights reserved.
import functools

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.structures import BaseDataElement
from mmpretrain.models.utils.data_preprocessor import ClsDataPreprocessor
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmsmlp.datasets.crop_batch import CropBatch, pending_crop_batch
from .gpu_augment import GraphedAugment, augment_batch
from .gpu_crop import resize_crops


@functools.lru_cache
def _side_stream(device: torch.device) -> torch.cuda.Stream:
    """The data preprocessors' second stream on ``device`` (one per
    process: streams are not copied with a module)."""
    return torch.cuda.Stream(device)


def _record_stream(obj, stream, seen=None) -> None:
    """``record_stream`` on the memory of each CUDA tensor of a
    preprocessor's outputs, once per block: the samples' labels and scores
    are views of the batch's two tensors (256 calls a batch otherwise)."""
    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        if obj.is_cuda:
            storage = obj.untyped_storage().data_ptr()
            if storage not in seen:
                seen.add(storage)
                obj.record_stream(stream)
    elif isinstance(obj, dict):
        for value in obj.values():
            _record_stream(value, stream, seen)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _record_stream(value, stream, seen)
    elif isinstance(obj, BaseDataElement):
        for value in obj.values():
            _record_stream(value, stream, seen)


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

    ``non_blocking`` (default True; mmengine's default is False): the batch
    is copied to the GPU without the host waiting for it. mmengine's blocking
    copy waits for every kernel queued before it, the previous iteration's
    backward and optimizer step, and leaves the GPU idle while the host
    prepares the next step. The loader's batches are in pinned memory
    (``pin_memory=True``), whose allocator keeps each block until its copy
    is done; the labels are pinned here.

    ``side_stream`` (default False): in training on CUDA, the batch is
    copied and prepared (everything this class does) on a second CUDA
    stream, which the training step's stream then waits for. Issued while
    the previous step's kernels are still queued, that work runs beside
    them instead of after them (the GPU augmentation path's ops are
    hundreds of small kernels). Its outputs are recorded on the training
    stream (``Tensor.record_stream``), so that their memory is not reused
    before the step has read them. The same values either way.
    """

    def __init__(self, *args, non_blocking: bool = True,
                 side_stream: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self._non_blocking = non_blocking
        self.side_stream = side_stream
        self._side_stream_ready = False

    def forward(self, data: dict, training: bool = False) -> dict:
        if not (self.side_stream and training
                and self.device.type == 'cuda'):
            return self._prepare(data, training)
        main = torch.cuda.current_stream(self.device)
        stream = _side_stream(self.device)
        if not self._side_stream_ready:
            # once: the buffers (mean, std) were written on the main stream
            stream.wait_stream(main)
            self._side_stream_ready = True
        with torch.cuda.stream(stream):
            outputs = self._prepare(data, training)
        _record_stream(outputs, main)
        main.wait_stream(stream)
        return outputs

    def _prepare(self, data: dict, training: bool) -> dict:
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
        batch_label = torch.cat(labels)
        if (self._non_blocking and self.device.type == 'cuda'
                and batch_label.device.type == 'cpu'):
            batch_label = batch_label.pin_memory()
        batch_label = batch_label.to(self.device,
                                     non_blocking=self._non_blocking)
        batch_score = F.one_hot(batch_label, num_classes)
        if training and self.batch_augments is not None:
            inputs, batch_score = self.batch_augments(inputs, batch_score)
        for sample, label, score in zip(samples, batch_label.split(1),
                                        batch_score):
            sample.set_gt_label(label)
            sample.set_gt_score(score)
        return {'inputs': inputs, 'data_samples': samples}


@MODELS.register_module()
class GPUAugClsDataPreprocessor(BatchedClsDataPreprocessor):
    """:class:`BatchedClsDataPreprocessor` that first applies, in training,
    the RandAugment ops and RandomErasing boxes that the data workers drew
    (``RandAugmentParams``, ``RandomErasingParams`` in the pipeline, their
    ``randaug_params`` / ``erase_params`` packed in each sample's metainfo)
    to the uint8 batch on the device, before normalisation.

    The ops have mmcv's CPU semantics on the images in the pipeline's
    channel order (BGR as mmcv decodes; pad and fill values are in that
    order): see :mod:`mmsmlp.models.gpu_augment` for what is exact and what
    differs by interpolation. Each RandAugment slot is applied in turn;
    within a slot, the images are grouped by op on the host (the parameters
    are host arrays from the workers) and each op runs once on its group
    with per-image values; Rotate, Shear and Translate of a slot run as one
    ``grid_sample`` with per-image matrices. The parameters go to the device
    in two copies per batch; no value is read back from it (torch's sync
    debug mode reports no host synchronisation).
    RandomErasing's fill noise is drawn from torch's generator.

    A batch of crops still to be resized (a
    :class:`~mmsmlp.datasets.crop_batch.CropBatch` from ``crop_collate``,
    after ``RandomResizedCropParams`` and ``RandomFlipParams`` in the
    pipeline) is first resized and flipped on the device, in training or
    not, with Pillow's arithmetic (:mod:`mmsmlp.models.gpu_crop`: the pixels
    of upstream's ``RandomResizedCrop(backend='pillow')`` and
    ``RandomFlip``), as are samples with a pending resize collated
    otherwise (mmpretrain's inferencers use ``default_collate``).

    ``graph_augment`` (default True): on CUDA, the augmentation's groups
    replay as a CUDA graph at fixed capacities
    (:class:`~mmsmlp.models.gpu_augment.GraphedAugment`: the same images;
    grouped, the ops cost the host a few hundred kernel launches per
    batch, a replay one). False: the grouped ops, as on CPU.

    Batches without the parameters (validation, testing, other pipelines)
    and ``training=False`` are the parent's, unchanged. Normalisation, RGB
    order, one-hot labels and Mixup/CutMix are the parent's.
    """

    def __init__(self, *args, graph_augment: bool = True, **kwargs):
        super().__init__(*args, **kwargs)
        self.graph_augment = graph_augment
        self._augment = GraphedAugment() if graph_augment else augment_batch

    def _prepare(self, data: dict, training: bool) -> dict:
        # mmengine calls the data preprocessor inside the optimizer
        # wrapper's autocast (BaseModel.train_step): the resize and the
        # augmentation (its convolution, affine_grid's matrix product) run
        # in float32, as on CPU, whatever the AMP dtype
        with torch.autocast(self.device.type, enabled=False):
            data = self._resize_and_augment(data, training)
        return super()._prepare(data, training)

    def _resize_and_augment(self, data: dict, training: bool) -> dict:
        samples = data.get('data_samples', None)
        if isinstance(data.get('inputs'), CropBatch):
            inputs = resize_crops(self.cast_data(data['inputs']))
            data = {**data, 'inputs': inputs}
        elif samples and 'crop_resize' in samples[0]:
            # collated without crop_collate (mmpretrain's inferencers use
            # default_collate): the pending resizes, from here
            inputs = data['inputs']
            crops = list(inputs) if isinstance(inputs, (list, tuple)) else \
                list(inputs.unbind())
            batch = pending_crop_batch([c.cpu() for c in crops], samples)
            data = {**data, 'inputs': resize_crops(self.cast_data(batch))}
        if training and samples:
            has = ['randaug_params' in s or 'erase_params' in s
                   for s in samples]
            if any(has):
                if not all(has):
                    raise ValueError(
                        'GPUAugClsDataPreprocessor: some samples of the batch '
                        'have no randaug_params/erase_params in their '
                        'metainfo (pack them with PackInputs meta_keys)')
                inputs = data['inputs']
                if isinstance(inputs, (list, tuple)):
                    if len({tuple(i.shape) for i in inputs}) != 1:
                        raise ValueError(
                            'GPUAugClsDataPreprocessor: the images of a batch '
                            'must have one size')
                    inputs = torch.stack(list(inputs))
                inputs = self.augment(self.cast_data(inputs), samples)
                data = {**data, 'inputs': inputs}
        return data

    def augment(self, inputs: torch.Tensor, samples: list) -> torch.Tensor:
        """The recorded RandAugment ops, then RandomErasing, on the uint8
        ``(N, C, H, W)`` batch ``inputs``; returns a uint8 batch."""
        randaug = erase = None
        if 'randaug_params' in samples[0]:
            randaug = np.stack([s.randaug_params for s in samples])
        if 'erase_params' in samples[0]:
            erase = np.stack([s.erase_params for s in samples])
        return self._augment(inputs, randaug, erase)

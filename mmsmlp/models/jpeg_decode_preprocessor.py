# Copyright (c) mmsmlp contributors. All rights reserved.
"""Validation and test images decoded, resized and cropped on the GPU."""
from typing import List

import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torchvision.io import ImageReadMode, decode_jpeg

from mmsmlp.datasets.transforms.jpeg_bytes import (center_crop_box,
                                                   resize_edge_shape)
from .data_preprocessor import (BatchedClsDataPreprocessor,
                                GPUAugClsDataPreprocessor)


@MODELS.register_module()
class JPEGDecodeDataPreprocessor(BatchedClsDataPreprocessor):
    """:class:`BatchedClsDataPreprocessor` that decodes, resizes and crops
    the JPEG bytes of ``LoadJPEGBytes`` on its device.

    A batch from a pipeline of ``LoadJPEGBytes`` and ``PackInputs``
    (``pseudo_collate``: a list of 1-D ``uint8`` tensors, on the host) is
    decoded in one call of ``torchvision.io.decode_jpeg`` on the
    preprocessor's device (nvJPEG on a GPU; libjpeg-turbo on the CPU), and
    each image is then processed as the CPU test pipeline does it:
    ``ResizeEdge(scale, edge='short', backend='pillow')`` (the same output
    size; ``F.interpolate`` with ``antialias=True``, Pillow's filters),
    rounded and clipped to ``uint8`` as Pillow returns it, and
    ``CenterCrop(crop_size)`` (mmcv's offsets). Images the transform
    loaded on the CPU (its fallback: already resized and cropped, BGR) join
    the batch as they are. The ``uint8`` batch is handed to the parent in
    the CPU pipeline's BGR order (one flip of the batch; nvJPEG gives RGB),
    so that channel order, normalisation, padding and labels are the
    parent's: the same tensors as the CPU pipeline's, up to the decoders'
    and resamplers' rounding (docs/benchmarks.md).

    Every other batch (decoded images: the training pipeline's, the CPU
    test pipeline's) goes to the parent unchanged.

    The transform records what its ``scale`` and ``crop_size`` give
    (``img_shape``, ``scale_factor``); an image for which this
    preprocessor's give other values raises a ``ValueError`` naming the
    file and both settings. A JPEG the decoder refuses raises a
    ``ValueError`` naming its file.

    Args:
        scale (int): The short edge after resizing. Defaults to 256.
        crop_size (int): The side of the centre crop. Defaults to 224.
        interpolation (str): 'bicubic' or 'bilinear' (Pillow's filters, by
            ``F.interpolate(..., antialias=True)``). Defaults to 'bicubic'.
        **kwargs: :class:`BatchedClsDataPreprocessor`'s arguments.
    """

    def __init__(self,
                 scale: int = 256,
                 crop_size: int = 224,
                 interpolation: str = 'bicubic',
                 **kwargs):
        if interpolation not in ('bicubic', 'bilinear'):
            raise ValueError(f"JPEGDecodeDataPreprocessor: interpolation "
                             f"must be 'bicubic' or 'bilinear', not "
                             f'{interpolation!r}')
        super().__init__(**kwargs)
        self.scale, self.crop_size = scale, crop_size
        self.interpolation = interpolation

    @staticmethod
    def _is_jpeg_batch(inputs) -> bool:
        return (isinstance(inputs, (list, tuple)) and any(
            isinstance(x, torch.Tensor) and x.dim() == 1 for x in inputs))

    def forward(self, data: dict, training: bool = False) -> dict:
        inputs = data['inputs']
        if not self._is_jpeg_batch(inputs):
            return super().forward(data, training)
        samples = data.get('data_samples')
        if samples is None or len(samples) != len(inputs):
            raise ValueError('JPEGDecodeDataPreprocessor: JPEG bytes need '
                             'their data samples (img_path, img_shape)')
        batch = self._decode_resize_crop(list(inputs), samples)
        return super().forward(
            dict(data, inputs=batch.flip(1)), training)  # to BGR

    def _decode_resize_crop(self, inputs: List[torch.Tensor],
                            samples: list) -> torch.Tensor:
        """The (N, 3, crop, crop) RGB ``uint8`` batch on the device."""
        encoded = [i for i, x in enumerate(inputs) if x.dim() == 1]
        decoded = self._decode([inputs[i] for i in encoded],
                               [samples[i] for i in encoded])
        crops = [None] * len(inputs)
        for i, img in zip(encoded, decoded):
            crops[i] = self._resize_crop(img, samples[i])
        for i, x in enumerate(inputs):
            if crops[i] is None:  # the transform's CPU path: BGR uint8
                if tuple(x.shape) != (3, self.crop_size, self.crop_size):
                    raise ValueError(
                        f'JPEGDecodeDataPreprocessor: '
                        f'{samples[i].get("img_path")} was loaded on the '
                        f'CPU as a {tuple(x.shape)} image, not (3, '
                        f'{self.crop_size}, {self.crop_size}) '
                        f'(crop_size={self.crop_size})')
                crops[i] = x.to(self.device, non_blocking=True).flip(0).float()
        # the vertical pass's rounding, for the batch at once
        return torch.stack(crops).round_().clamp_(0, 255).to(torch.uint8)

    def _decode(self, inputs: List[torch.Tensor], samples: list) -> list:
        if not inputs:
            return []
        mode = ImageReadMode.RGB  # grayscale JPEGs as 3 equal channels
        try:
            return decode_jpeg(inputs, mode=mode, device=self.device)
        except RuntimeError as e:
            # name the file: decode one at a time to find it
            for x, sample in zip(inputs, samples):
                try:
                    decode_jpeg(x, mode=mode, device=self.device)
                except RuntimeError as one:
                    raise ValueError(f'Broken image {sample.get("img_path")}'
                                     f': cannot be decoded ({one})') from one
            raise ValueError(f'JPEG batch cannot be decoded ({e}); '
                             'each image alone can') from e

    def _resize_crop(self, img: torch.Tensor, sample) -> torch.Tensor:
        """One decoded (3, H, W) image resized and cropped as ResizeEdge and
        CenterCrop do it, in float: the last pass not yet rounded."""
        height, width = img.shape[-2:]
        new_h, new_w = resize_edge_shape(height, width, self.scale)
        top, left, crop_h, crop_w = center_crop_box(new_h, new_w,
                                                    self.crop_size)
        expected = ((crop_h, crop_w), (new_w / width, new_h / height))
        recorded = (sample.get('img_shape'), sample.get('scale_factor'))
        if recorded != expected:
            raise ValueError(
                f'JPEGDecodeDataPreprocessor(scale={self.scale}, crop_size='
                f'{self.crop_size}) gives {sample.get("img_path")} img_shape '
                f'{expected[0]} and scale_factor {expected[1]}, its loading '
                f'transform recorded {recorded[0]} and {recorded[1]}: give '
                f'LoadJPEGBytes and the data preprocessor the same scale '
                f'and crop_size')
        # Pillow resizes in two passes, horizontal then vertical, each
        # rounded and clipped to uint8 (the clipping cuts the filter's
        # overshoot at sharp edges; one pass in float differs there by up
        # to 20 levels); a pass that keeps its size is skipped, as Pillow
        # does. The crop's columns are taken before the vertical pass,
        # which works on each column alone.
        img = img[None].float()
        if new_w != width:
            img = self._resample(img, (height, new_w)).round_().clamp_(0, 255)
        img = img[..., left:left + crop_w]
        if new_h != height:
            img = self._resample(img, (new_h, crop_w))
        return img[0, :, top:top + crop_h]

    def _resample(self, img: torch.Tensor, size: tuple) -> torch.Tensor:
        """Pillow's resampling filter along the axis whose size changes."""
        return F.interpolate(
            img, size, mode=self.interpolation, align_corners=False,
            antialias=True)


@MODELS.register_module()
class GPUDataPreprocessor(JPEGDecodeDataPreprocessor,
                          GPUAugClsDataPreprocessor):
    """Both GPU data paths in one preprocessor: validation and test JPEGs
    decoded, resized and cropped on the device
    (:class:`JPEGDecodeDataPreprocessor`), and training's RandAugment and
    RandomErasing applied there (:class:`GPUAugClsDataPreprocessor`). Each
    acts on the batches it is for (JPEG bytes; training batches with drawn
    parameters) and hands every other batch on unchanged.
    """

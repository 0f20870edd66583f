# Copyright (c) mmsmlp contributors. All rights reserved.
"""CPU halves of the GPU augmentation path: RandomResizedCrop that only
crops, RandomFlip, RandAugment and RandomErasing that only draw their
random parameters, for :class:`mmsmlp.models.GPUAugClsDataPreprocessor` to
apply on the device.

The drawing is upstream's own: each transform is or holds an instance of
mmpretrain's (or mmcv's) transform (built from the same arguments, so the
same policy table, hyper-parameters and checks) and calls its random
methods in the order its ``transform`` calls them. For the same numpy
random state the parameters recorded are those upstream applies.
"""
from math import ceil
from typing import Optional

import mmcv
import numpy as np
from mmcv.transforms import BaseTransform, CenterCrop, RandomFlip
from mmpretrain.datasets.transforms import (AutoContrast, Brightness,
                                            ColorTransform, Contrast,
                                            Equalize, Invert, Posterize,
                                            RandAugment, RandomErasing,
                                            RandomResizedCrop, ResizeEdge,
                                            Rotate, Sharpness, Shear,
                                            Solarize, SolarizeAdd, Translate)
from mmpretrain.registry import TRANSFORMS

from ..crop_batch import FILTERS

# The ops the device applies, by code (see RANDAUG_ROW for a row's layout).
RANDAUG_OPS = ('AutoContrast', 'Equalize', 'Invert', 'Rotate', 'Posterize',
               'Solarize', 'SolarizeAdd', 'ColorTransform', 'Contrast',
               'Brightness', 'Sharpness', 'ShearX', 'ShearY', 'TranslateX',
               'TranslateY')
OP_CODE = {name: code for code, name in enumerate(RANDAUG_OPS)}
GEOMETRIC_OPS = ('Rotate', 'ShearX', 'ShearY', 'TranslateX', 'TranslateY')
INTERPOLATIONS = ('nearest', 'bilinear', 'bicubic')

# One row per RandAugment slot:
#   [op code, applied (0/1), value, aux, interpolation code, pad_val x 3]
# value: the argument upstream passes to mmcv (Rotate: the angle in degrees,
# clockwise; Shear: the shear factor; Translate: the offset in pixels;
# Posterize: the bits, ceil'd; Solarize: the threshold; SolarizeAdd: the
# value added; Color/Contrast/Brightness/Sharpness: the factor, 1 +
# magnitude). aux: SolarizeAdd's threshold, Rotate's scale.
RANDAUG_ROW = 8
# [erase (0/1), top, left, h, w, mode (0 const, 1 uniform, 2 normal),
#  fill_color x 3, fill_std x 3]
ERASE_ROW = 12
ERASE_MODES = ('const', 'uniform', 'normal')


def _op_name(op) -> str:
    """The device op name of one of upstream's RandAugment ops."""
    kind = type(op)
    if kind in (Shear, Translate):
        axis = 'X' if op.direction == 'horizontal' else 'Y'
        return kind.__name__ + axis
    supported = (AutoContrast, Equalize, Invert, Rotate, Posterize, Solarize,
                 SolarizeAdd, ColorTransform, Contrast, Brightness,
                 Sharpness)
    if kind not in supported:
        names = [c.__name__ for c in supported + (Shear, Translate)]
        raise ValueError(
            f'RandAugmentParams: policy type {kind.__name__} has no GPU '
            f'implementation; supported: {", ".join(names)}')
    return kind.__name__


def _image_size(results: dict) -> tuple:
    """The image's height and width as the device will see it: the pending
    resize's (:class:`RandomResizedCropParams`) or the image's own."""
    pending = results.get('crop_resize')
    return tuple(pending[:2]) if pending else results['img'].shape[:2]


def _check_device_resize(name: str, backend: str, interpolation: str):
    if backend != 'pillow' or interpolation not in FILTERS:
        raise ValueError(
            f'{name}: backend={backend!r}, interpolation={interpolation!r} '
            f"has no device form; use backend='pillow' with interpolation "
            f'in {tuple(FILTERS)}')


def _images_only(what: str, results: dict) -> None:
    """The device moves pixels only: refuse boxes, keypoints and maps."""
    extra = [key for key in ('gt_bboxes', 'gt_keypoints', 'gt_seg_map')
             if results.get(key) is not None]
    if extra:
        raise ValueError(f'{what} images only; the sample also has {extra}')


@TRANSFORMS.register_module()
class RandomResizedCropParams(RandomResizedCrop):
    """mmpretrain's ``RandomResizedCrop`` that crops and leaves the resize
    to the device: ``results['img']`` is the crop (the same random draws and
    the same crop as upstream's), and ``results['crop_resize']`` holds
    ``(height, width, interpolation)`` of the resize still to do;
    ``img_shape`` is the shape upstream's would give.
    :func:`~mmsmlp.datasets.crop_batch.crop_collate` makes the batch's
    crops one :class:`~mmsmlp.datasets.crop_batch.CropBatch` and
    :class:`~mmsmlp.models.GPUAugClsDataPreprocessor` resizes them on the
    device with Pillow's arithmetic (the same pixels as upstream's
    ``backend='pillow'``). Pack the key with
    ``PackInputs(meta_keys=(..., 'crop_resize'))``.

    Same arguments as upstream's; ``backend`` must be ``'pillow'`` and
    ``interpolation`` ``'bicubic'`` or ``'bilinear'`` (Pillow's resampling
    convolutions; the device has no other form).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _check_device_resize(type(self).__name__, self.backend,
                             self.interpolation)

    def transform(self, results: dict) -> dict:
        img = results['img']
        offset_h, offset_w, target_h, target_w = self.rand_crop_params(img)
        results['img'] = mmcv.imcrop(
            img,
            bboxes=np.array([
                offset_w, offset_h, offset_w + target_w - 1,
                offset_h + target_h - 1
            ]))
        height, width = self.scale
        results['img_shape'] = (height, width) + img.shape[2:]
        results['crop_resize'] = (height, width, self.interpolation)
        return results


@TRANSFORMS.register_module()
class ResizeEdgeParams(ResizeEdge):
    """mmpretrain's ``ResizeEdge`` that leaves the resize to the device:
    the image is unchanged, ``results['crop_resize']`` holds ``(height,
    width, interpolation)`` of the resize (upstream's size), and ``scale``,
    ``scale_factor`` and ``img_shape`` are what upstream's would set. For
    :func:`~mmsmlp.datasets.crop_batch.crop_collate` and
    :class:`~mmsmlp.models.GPUAugClsDataPreprocessor` (Pillow's arithmetic
    on the device: the same pixels), usually followed by
    :class:`CenterCropParams`. Pack the key with
    ``PackInputs(meta_keys=(..., 'crop_resize'))``.

    Same arguments as upstream's; ``backend`` must be ``'pillow'`` and
    ``interpolation`` ``'bicubic'`` or ``'bilinear'``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _check_device_resize(type(self).__name__, self.backend,
                             self.interpolation)

    def _resize_img(self, results: dict) -> None:
        # upstream's transform has chosen results['scale'] (width, height)
        h, w = results['img'].shape[:2]
        width, height = results['scale']
        results['crop_resize'] = (height, width, self.interpolation)
        results['img_shape'] = (height, width)
        results['scale_factor'] = (width / w, height / h)


@TRANSFORMS.register_module()
class CenterCropParams(CenterCrop):
    """mmcv's ``CenterCrop`` of the image a pending device resize
    (:class:`ResizeEdgeParams`) will make: ``results['crop_window']``
    holds ``(top, left, height, width)`` of upstream's crop in it, and
    ``img_shape`` / ``pad_shape`` are what upstream's would set. Pack the
    key with ``PackInputs(meta_keys=(..., 'crop_resize', 'crop_window'))``.

    Images only, and the crop must fit in the resized image (upstream's
    ``auto_pad`` has no device form)."""

    def transform(self, results: dict) -> dict:
        pending = results.get('crop_resize')
        if not pending or results.get('crop_window') is not None:
            raise ValueError(
                'CenterCropParams must follow ResizeEdgeParams in the '
                'pipeline (it crops the image the device will resize)')
        _images_only('CenterCropParams crops', results)
        crop_width, crop_height = self.crop_size
        img_height, img_width = pending[:2]
        if crop_height > img_height or crop_width > img_width:
            raise ValueError(
                f'CenterCropParams: the {crop_height}x{crop_width} crop is '
                f'larger than the resized {img_height}x{img_width} image of '
                f"{results.get('img_path')} (auto_pad has no device form)")
        # upstream's window
        top = max(0, int(round((img_height - crop_height) / 2.)))
        left = max(0, int(round((img_width - crop_width) / 2.)))
        results['crop_window'] = (top, left, crop_height, crop_width)
        results['img_shape'] = results['pad_shape'] = (crop_height,
                                                       crop_width)
        return results


@TRANSFORMS.register_module()
class RandomFlipParams(RandomFlip):
    """mmcv's ``RandomFlip`` that draws the flip (the same draw, the same
    ``flip`` and ``flip_direction`` keys) and leaves it to the device, after
    the pending resize: ``results['crop_flip']`` says whether to flip.
    Horizontal flips of images only; it must follow
    :class:`RandomResizedCropParams` (upstream flips the resized image).
    Pack the key with ``PackInputs(meta_keys=(..., 'crop_flip'))``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        directions = ([self.direction] if isinstance(self.direction, str)
                      else list(self.direction))
        if directions != ['horizontal']:
            raise ValueError(
                "RandomFlipParams: direction must be 'horizontal' (the "
                f'device flips horizontally), got {self.direction!r}')

    def transform(self, results: dict) -> dict:
        if not results.get('crop_resize'):
            raise ValueError(
                'RandomFlipParams must follow RandomResizedCropParams in the '
                'pipeline (it flips the resized image on the device)')
        results['crop_flip'] = False
        return super().transform(results)

    def _flip(self, results: dict) -> None:
        # called by upstream's transform for a drawn flip, in place of
        # flipping the image
        _images_only('RandomFlipParams flips', results)
        results['crop_flip'] = True


def _pad3(pad_val) -> tuple:
    pad = tuple(pad_val) if isinstance(pad_val, (tuple, list)) else (
        pad_val, ) * 3
    if len(pad) != 3:
        raise ValueError(f'RandAugmentParams: pad_val must be a number or 3 '
                         f'numbers (one per channel), got {pad_val!r}')
    return pad


@TRANSFORMS.register_module()
class RandAugmentParams(BaseTransform):
    """mmpretrain's ``RandAugment`` that draws its ops and their magnitudes
    without applying them: the image is unchanged and
    ``results['randaug_params']`` holds a ``(num_policies, 8)`` float64 array,
    one row per chosen op (see ``RANDAUG_ROW`` in this module): the op's
    code, whether it is applied (its ``prob`` check), the final argument
    upstream would pass to mmcv (sign and ``ceil`` included) and the op's
    fixed settings (pad value in the image's channel order, interpolation).
    :class:`~mmsmlp.models.GPUAugClsDataPreprocessor` applies them on the
    device; pack the key with
    ``PackInputs(meta_keys=(..., 'randaug_params'))``.

    Same arguments as mmpretrain's ``RandAugment``, which is built from them
    and whose random methods are called in the order its ``transform`` calls
    them (``random_policy_indices``, then per op ``random_disable``,
    ``random_magnitude``, ``random_negative``): for the same numpy random
    state the rows are what upstream applies, and the numpy random stream
    after the transform is the same as after upstream's. Upstream draws no
    random numbers while changing pixels.

    Supported ops: those of the ``'timm_increasing'`` policies (AutoContrast,
    Equalize, Invert, Rotate about the image centre, Posterize, Solarize,
    SolarizeAdd, ColorTransform, Contrast, Brightness, Sharpness, Shear and
    Translate), with 'nearest', 'bilinear' or 'bicubic' interpolation; any
    other policy raises an error naming it.
    """

    def __init__(self, *args, **kwargs):
        self.randaug = RandAugment(*args, **kwargs)
        self.num_policies = self.randaug.num_policies
        # each op's fixed part of the row
        self.rows = []
        for op in self.randaug.transforms:
            name = _op_name(op)
            row = np.zeros(RANDAUG_ROW)
            row[0] = OP_CODE[name]
            if name in GEOMETRIC_OPS:
                if op.interpolation not in INTERPOLATIONS:
                    raise ValueError(
                        f'RandAugmentParams: {type(op).__name__} '
                        f'interpolation={op.interpolation!r} has no GPU '
                        f'implementation; choose from {INTERPOLATIONS}')
                row[4] = INTERPOLATIONS.index(op.interpolation)
                row[5:8] = _pad3(op.pad_val)
            if name == 'Rotate':
                if op.center is not None:
                    raise ValueError(
                        'RandAugmentParams: Rotate center must be None (the '
                        f'image centre) on the GPU, got {op.center!r}')
                row[3] = op.scale
            if name == 'SolarizeAdd':
                row[3] = op.thr
            self.rows.append((name, row))

    @staticmethod
    def _draw(op, name: str, img_shape: tuple) -> Optional[float]:
        """What ``op.transform`` draws: None if disabled, else the value
        passed to mmcv."""
        if op.random_disable():
            return None
        if name in ('AutoContrast', 'Equalize', 'Invert'):
            return 0.
        fixed = {
            'Rotate': 'angle', 'Posterize': 'bits', 'Solarize': 'thr'
        }.get(name, 'magnitude')
        value = getattr(op, fixed)
        if name in ('Posterize', 'Solarize', 'SolarizeAdd'):
            value = op.random_magnitude() if value is None else value
        else:  # these turn the magnitude negative at random
            value = op.random_negative(
                op.random_magnitude() if value is None else value)
        if name == 'Posterize':
            return float(ceil(value))
        if name == 'TranslateX':
            return float(value * img_shape[1])
        if name == 'TranslateY':
            return float(value * img_shape[0])
        if name in ('ColorTransform', 'Contrast', 'Brightness', 'Sharpness'):
            return float(1 + value)
        return float(value)

    def transform(self, results: dict) -> dict:
        params = np.zeros((self.num_policies, RANDAUG_ROW))
        img_shape = _image_size(results)
        for slot, index in enumerate(self.randaug.random_policy_indices()):
            name, row = self.rows[index]
            params[slot] = row
            value = self._draw(self.randaug.transforms[index], name,
                               img_shape)
            if value is not None:
                params[slot, 1:3] = 1, value
        results['randaug_params'] = params
        return results

    def __repr__(self) -> str:
        return 'RandAugmentParams' + repr(self.randaug)[len('RandAugment'):]


@TRANSFORMS.register_module()
class RandomErasingParams(BaseTransform):
    """mmpretrain's ``RandomErasing`` that draws whether to erase and the box
    without erasing: the image is unchanged and ``results['erase_params']``
    holds a float64 array of 12 (see ``ERASE_ROW`` in this module): erase
    (0/1), top, left, height, width, the fill mode and the fill colour and
    std (in the image's channel order).
    :class:`~mmsmlp.models.GPUAugClsDataPreprocessor` erases on the device;
    pack the key with ``PackInputs(meta_keys=(..., 'erase_params'))``.

    Same arguments as mmpretrain's ``RandomErasing``, which is built from
    them and whose ``random_disable`` and ``random_patch`` are called as its
    ``transform`` calls them: for the same numpy random state the box is the
    one upstream erases. The fill of ``mode='rand'`` (upstream: per pixel,
    ``N(fill_color, fill_std)`` truncated to integers and clipped to 0-255,
    or uniform in 0-255 without ``fill_std``) is drawn on the device from
    torch's generator instead, with the same distribution. Upstream draws
    that noise from numpy after the box, so after an erased image the numpy
    random stream (and so later images' crops, flips, ops) differs from the
    CPU pipeline's: same distribution, other draws.
    """

    def __init__(self, *args, **kwargs):
        self.erasing = RandomErasing(*args, **kwargs)
        er = self.erasing
        if er.mode == 'const':
            mode = 0
        elif er.mode == 'rand':
            mode = 1 if er.fill_std is None else 2
        else:
            raise ValueError(f'RandomErasingParams: mode must be "const" or '
                             f'"rand", got {er.mode!r}')
        self.row = np.zeros(ERASE_ROW)
        self.row[5] = mode
        if mode == 0:  # upstream fills with np.array(fill_color, np.uint8)
            self.row[6:9] = np.array(er.fill_color, dtype=np.uint8)
        else:
            self.row[6:9] = er.fill_color
        if mode == 2:
            self.row[9:12] = er.fill_std

    def transform(self, results: dict) -> dict:
        params = self.row.copy()
        if not self.erasing.random_disable():
            img_h, img_w = _image_size(results)
            params[0] = 1
            params[1:5] = self.erasing.random_patch(img_h, img_w)
        results['erase_params'] = params
        return results

    def __repr__(self) -> str:
        return 'RandomErasingParams' + repr(
            self.erasing)[len('RandomErasing'):]

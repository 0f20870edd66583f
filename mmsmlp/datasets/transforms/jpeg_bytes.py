# Copyright (c) mmsmlp contributors. All rights reserved.
"""The validation/test pipeline's loading step for decoding on the GPU: the
worker reads the JPEG file's bytes; :class:`JPEGDecodeDataPreprocessor`
decodes them (nvJPEG), resizes and crops them."""
from typing import Optional

import numpy as np
import torch
from mmcv.transforms import CenterCrop
from mmengine.registry import TRANSFORMS
from mmpretrain.datasets.transforms import ResizeEdge

from .loading import _JPEG_EOI, _JPEG_SOI, CheckedLoadImageFromFile

# start-of-frame markers of the JPEGs handed to the GPU: baseline and
# extended sequential Huffman. The others are decoded on the CPU: lossless,
# hierarchical and arithmetic-coded ones, and progressive ones, which
# torchvision's nvJPEG path decodes one at a time with the Huffman decoding
# on the host, in the main process (the one validation is short of), where
# a worker's CPU decoding runs beside it
_SOF_DEVICE = (0xC0, 0xC1)
_SOF_ALL = (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD,
            0xCE, 0xCF)


def resize_edge_shape(height: int, width: int, scale: int) -> tuple:
    """(height, width) after mmpretrain's ``ResizeEdge(scale, edge='short')``:
    the short edge to ``scale``, the other ``int(scale * long / short)``
    (truncated, as ResizeEdge computes it)."""
    if width < height:
        return int(scale * height / width), scale
    return scale, int(scale * width / height)


def center_crop_box(height: int, width: int, crop_size: int) -> tuple:
    """(top, left, crop height, crop width) of mmcv's ``CenterCrop``: the
    offset is ``round((size - crop) / 2)`` (Python's round: halves to even),
    a crop larger than the image is cut to the image."""
    crop_h, crop_w = min(crop_size, height), min(crop_size, width)
    top = max(0, int(round((height - crop_h) / 2.)))
    left = max(0, int(round((width - crop_w) / 2.)))
    return top, left, crop_h, crop_w


def jpeg_header(data: bytes) -> Optional[dict]:
    """What the markers before the first scan say about a JPEG, or None if
    ``data`` has no well-formed start of frame before it: ``sof`` (the
    start-of-frame marker), ``precision``, ``height``, ``width``,
    ``components``, ``adobe_transform`` (APP14's colour transform, None
    without APP14) and ``orientation`` (EXIF's, 1 without one)."""
    if data[:2] != _JPEG_SOI:
        return None
    info = dict(adobe_transform=None, orientation=1)
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length
            pos += 2
            continue
        if marker in (0xDA, 0xD9):  # scan or end before any frame
            return None
        length = int.from_bytes(data[pos + 2:pos + 4], 'big')
        segment = data[pos + 4:pos + 2 + length]
        if marker in _SOF_ALL:
            if len(segment) < 6:
                return None
            info.update(
                sof=marker,
                precision=segment[0],
                height=int.from_bytes(segment[1:3], 'big'),
                width=int.from_bytes(segment[3:5], 'big'),
                components=segment[5])
            return info
        if marker == 0xEE and segment[:5] == b'Adobe' and len(segment) > 11:
            info['adobe_transform'] = segment[11]
        elif marker == 0xE1 and segment[:6] == b'Exif\x00\x00':
            info['orientation'] = _exif_orientation(segment[6:])
        pos += 2 + length
    return None


def _exif_orientation(tiff: bytes) -> int:
    """The orientation tag (0x0112) of IFD0 of an EXIF block: 1 without
    one, 0 if the block cannot be read (any value but 1 sends the image to
    the CPU decoder, which then judges the block as OpenCV does)."""
    order = {b'II': 'little', b'MM': 'big'}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 0
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 0
    for i in range(int.from_bytes(tiff[ifd:ifd + 2], order)):
        entry = tiff[ifd + 2 + 12 * i:ifd + 14 + 12 * i]
        if len(entry) < 12:
            return 0
        if int.from_bytes(entry[:2], order) == 0x0112:
            return int.from_bytes(entry[8:10], order)
    return 1


@TRANSFORMS.register_module()
class LoadJPEGBytes(CheckedLoadImageFromFile):
    """Validation/test loading for :class:`JPEGDecodeDataPreprocessor`: the
    file's bytes, decoded, resized and cropped on the GPU.

    It stands for ``CheckedLoadImageFromFile``, ``ResizeEdge(scale,
    edge='short', backend='pillow', interpolation)`` and
    ``CenterCrop(crop_size)`` of the CPU test pipeline. ``results['img']``
    becomes the file's bytes as a 1-D ``uint8`` tensor (batched with
    ``collate_fn=dict(type='pseudo_collate')``: the lengths differ), and
    ``ori_shape``, ``img_shape`` and ``scale_factor`` are set from the
    JPEG's header as those three transforms set them: the data
    preprocessor checks that its own ``scale`` and ``crop_size`` give the
    same (an error otherwise).

    The file is checked as ``CheckedLoadImageFromFile`` checks it: a file
    that cannot be read, or a truncated JPEG (no end-of-image marker),
    raises a ``ValueError`` naming it. A file the GPU path does not take
    is loaded, resized and cropped here on the CPU, by the transforms
    above (``results['img']`` is then the ``(3, crop, crop)`` BGR ``uint8``
    tensor of the CPU pipeline): a file that is not a JPEG (a PNG named
    ``.JPEG``), a JPEG with other than 1 or 3 components (CMYK, YCCK), an
    RGB-coded JPEG (Adobe colour transform 0), one that is not 8-bit
    sequential Huffman-coded (progressive JPEGs among them: nvJPEG would
    decode them one at a time, Huffman on the host of the main process),
    one with an EXIF orientation (OpenCV turns the image, the
    GPU decoder would not), and a JPEG whose header cannot be read (the CPU
    decoder then names the error). An image the caller loaded (results
    with ``img`` and no ``img_path``, as mmpretrain's inferencers give
    them) is resized and cropped here too.

    Args:
        scale (int): The short edge after resizing. Defaults to 256.
        crop_size (int): The side of the centre crop. Defaults to 224.
        interpolation (str): Pillow's resampling, 'bicubic' or 'bilinear'.
            Defaults to 'bicubic'.
        **kwargs: ``CheckedLoadImageFromFile``'s arguments (for the file
            backend, and the CPU path's decoding).
    """

    def __init__(self,
                 scale: int = 256,
                 crop_size: int = 224,
                 interpolation: str = 'bicubic',
                 **kwargs):
        if kwargs.get('skip_broken'):
            raise ValueError('LoadJPEGBytes: skip_broken is not supported '
                             '(validation and test datasets refuse a '
                             'skipped image)')
        if interpolation not in ('bicubic', 'bilinear'):
            raise ValueError(f"LoadJPEGBytes: interpolation must be "
                             f"'bicubic' or 'bilinear', not {interpolation!r}")
        super().__init__(**kwargs)
        self.scale, self.crop_size = scale, crop_size
        self.interpolation = interpolation
        self.resize = ResizeEdge(
            scale, edge='short', backend='pillow', interpolation=interpolation)
        self.crop = CenterCrop(crop_size)

    def transform(self, results: dict) -> dict:
        if 'img_path' not in results and 'img' in results:
            # an image loaded by the caller (an inferencer): resized and
            # cropped here
            return self._resize_crop(results)
        filename = results['img_path']
        try:
            data = self._read(filename)
        except Exception as e:  # what the file backend raised
            raise ValueError(f'Broken image {filename}: '
                             f'{type(e).__name__}: {e}') from e
        header = jpeg_header(data)
        if not self._on_device(header):
            return self._load_on_cpu(results)
        if not data.rstrip(b'\x00').endswith(_JPEG_EOI):
            # data may follow the image: the full check
            reason = self._jpeg_truncated(filename)
            if reason is not None:
                raise ValueError(f'Broken image {filename}: {reason}')
        height, width = header['height'], header['width']
        new_h, new_w = resize_edge_shape(height, width, self.scale)
        _, _, crop_h, crop_w = center_crop_box(new_h, new_w, self.crop_size)
        results['img'] = torch.from_numpy(
            np.frombuffer(data, dtype=np.uint8).copy())
        results['ori_shape'] = (height, width)
        results['img_shape'] = (crop_h, crop_w)
        results['scale_factor'] = (new_w / width, new_h / height)
        return results

    @staticmethod
    def _on_device(header: Optional[dict]) -> bool:
        return (header is not None and header['sof'] in _SOF_DEVICE
                and header['precision'] == 8 and header['components'] in (1, 3)
                and header['height'] > 0 and header['width'] > 0
                and header['orientation'] == 1
                and not (header['components'] == 3
                         and header['adobe_transform'] == 0))

    def _load_on_cpu(self, results: dict) -> dict:
        """The CPU test pipeline: load (errors naming the file), resize,
        crop; the crop as a (3, H, W) BGR tensor."""
        return self._resize_crop(super().transform(results))

    def _resize_crop(self, results: dict) -> dict:
        results = self.crop(self.resize(results))
        img = np.ascontiguousarray(results['img'].transpose(2, 0, 1))
        results['img'] = torch.from_numpy(img)
        return results

    def __repr__(self):
        return (f'{super().__repr__()[:-1]}, scale={self.scale}, '
                f'crop_size={self.crop_size}, '
                f"interpolation='{self.interpolation}')")

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Semantic-segmentation label loading that checks each label map."""
import numpy as np
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import TRANSFORMS

MAX_REPORTED = 10  # bad label values listed in an error


@TRANSFORMS.register_module()
class CheckedLoadAnnotations(LoadAnnotations):
    """mmseg's ``LoadAnnotations`` that checks each label map it loads.

    After mmseg's loading (``reduce_zero_label``, ``label_map``) the label
    map must be one class index per pixel (not an RGB image), of the size of
    its image (``ori_shape``, when the image was loaded first), with values
    in ``[0, num_classes)`` or ``ignore_index``. Otherwise a ``ValueError``
    names the label map and the problem, instead of a failure far from the
    cause (``IndexError: Target 199 is out of bounds`` in the loss, ``stack
    expects each tensor to be equal size`` in the data loader) or, for an
    RGB map, training on its channels.

    The check runs per sample in the data-loading workers (one pass over
    the label map, well under a millisecond for ADE20K's), not on the 20k
    label maps when the dataset is built. A sample without label map
    (``seg_map_path`` None: inference, e.g. ``MMSegInferencer`` with the
    test pipeline) passes through unchanged.

    Args:
        num_classes (int): The number of classes (150 for ADE20K).
        ignore_index (int): The label of ignored pixels. Defaults to 255.
        **kwargs: mmseg's ``LoadAnnotations`` arguments.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, **kwargs):
        super().__init__(**kwargs)
        if not (isinstance(num_classes, int) and num_classes >= 1):
            raise ValueError(
                f'num_classes must be an int >= 1, got {num_classes!r}')
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        if results.get('seg_map_path') is None:
            # inference (mmseg's inferencer drops only its own
            # LoadAnnotations from the test pipeline): no label map
            return results
        return super().transform(results)

    def _load_seg_map(self, results: dict) -> None:
        super()._load_seg_map(results)
        label = results['gt_seg_map']
        path = results.get('seg_map_path')
        if label.ndim != 2:
            raise ValueError(
                f'Label map {path}: shape {label.shape}; a label map holds '
                'one class index per pixel (a grayscale or palette PNG), not '
                'colours')
        image_shape = results.get('ori_shape')
        if image_shape is not None and tuple(label.shape) != tuple(
                image_shape[:2]):
            raise ValueError(
                f'Label map {path}: {label.shape[1]}x{label.shape[0]} '
                f'(width x height), its image {results.get("img_path")} is '
                f'{image_shape[1]}x{image_shape[0]}')
        if label.max() < self.num_classes:
            return
        bad = (label >= self.num_classes) & (label != self.ignore_index)
        if bad.any():
            values = np.unique(label[bad]).tolist()
            shown = ', '.join(map(str, values[:MAX_REPORTED])) + (
                ', ...' if len(values) > MAX_REPORTED else '')
            zero = (' (after reduce_zero_label: file values minus 1)'
                    if self.reduce_zero_label else '')
            raise ValueError(
                f'Label map {path}: {int(bad.sum())} pixel(s) with labels '
                f'{shown}{zero}, out of range for {self.num_classes} classes '
                f'(labels 0 to {self.num_classes - 1}, and '
                f'{self.ignore_index} for ignored pixels)')

    def __repr__(self):
        return (f'{super().__repr__()[:-1]}, num_classes={self.num_classes}, '
                f'ignore_index={self.ignore_index})')

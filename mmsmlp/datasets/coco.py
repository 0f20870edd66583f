# Copyright (c) mmsmlp contributors. All rights reserved.
"""A COCO dataset that counts and reports what it drops."""
import math
from collections import Counter
from typing import List, Optional

from mmdet.datasets import CocoDataset
from mmdet.datasets.transforms import LoadAnnotations
from mmdet.registry import DATASETS
from mmengine.logging import MMLogger

IMAGE_FIELDS = ('file_name', 'height', 'width')
ANNOTATION_FIELDS = ('bbox', 'category_id', 'area')


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` that reports the annotations it drops.

    ``CocoDataset`` drops, silently, annotations whose box is empty, smaller
    than a pixel or outside the image, whose area is not positive or whose
    category is not one of the dataset's classes; NaN boxes may get through,
    and a missing ``segmentation`` fails later (``KeyError: 'mask'``). This
    class checks each annotation once, when the dataset is built, and:

    - logs one warning per annotation file with the number of annotations
      dropped for each reason (NaN or infinite box, zero or negative width
      or height, under one pixel, outside the image, area not positive,
      category id not in the file's ``categories``, category not among the
      dataset's classes, empty ``segmentation``);
    - with ``filter_cfg.filter_empty_gt`` (training), leaves out the
      images whose annotations were all dropped (``CocoDataset`` trained on
      them with no object), with a warning;
    - raises ``ValueError`` when no usable annotation remains (training
      datasets) or no image remains after ``filter_cfg``;
    - raises ``ValueError`` naming the file, the annotation id and the image
      for a missing field: an image's ``file_name``, ``height``, ``width``;
      an annotation's ``bbox`` (``[x, y, w, h]``), ``category_id``,
      ``area``, and ``segmentation`` when the pipeline loads masks
      (``LoadAnnotations(with_mask=True)``, as Mask R-CNN's).

    Annotations marked ``ignore`` are left to ``CocoDataset`` (not counted).

    Args:
        require_masks (bool, optional): Require ``segmentation`` in every
            annotation. Defaults to None: when the pipeline loads masks.
        **kwargs: ``CocoDataset``'s arguments.
    """

    def __init__(self, *args, require_masks: Optional[bool] = None,
                 **kwargs):
        self.require_masks = require_masks
        super().__init__(*args, **kwargs)

    def _masks_required(self) -> bool:
        if self.require_masks is not None:
            return self.require_masks
        return any(
            isinstance(t, LoadAnnotations) and t.with_mask
            for t in getattr(self.pipeline, 'transforms', []))

    def load_data_list(self) -> List[dict]:
        self._dropped = Counter()
        self._unknown_ids = set()
        self._num_anns = 0
        self._fields = ANNOTATION_FIELDS + (
            ('segmentation', ) if self._masks_required() else ())
        try:
            data_list = super().load_data_list()
        except KeyError as e:  # from pycocotools' index of the file
            raise ValueError(
                f'The COCO annotation file {self.ann_file}: an image, '
                f'annotation or category has no {e.args[0]!r} field') from e
        kept = sum(len(info['instances']) for info in data_list)
        dropped = sum(self._dropped.values())
        if dropped:
            reasons = ', '.join(f'{n} {reason}'
                                for reason, n in self._dropped.most_common())
            if self._unknown_ids:
                ids = sorted(self._unknown_ids)
                reasons += f' (unknown category ids: {ids[:10]}' + (
                    ' ...)' if len(ids) > 10 else ')')
            MMLogger.get_current_instance().warning(
                f'{self.ann_file}: dropped {dropped} of {self._num_anns} '
                f'annotations: {reasons}')
        if not self.test_mode and self._num_anns and not kept:
            raise ValueError(
                f'No usable annotation in {self.ann_file}: all '
                f'{self._num_anns} annotations were dropped (see the warning '
                'above for the reasons)')
        return data_list

    def filter_data(self) -> List[dict]:
        data_list = super().filter_data()
        # CocoDataset's filter_empty_gt keeps an image that has annotations
        # in the file even when it dropped them all
        if (not self.test_mode and self.filter_cfg
                and self.filter_cfg.get('filter_empty_gt', False)):
            emptied = sum(not info['instances'] for info in data_list)
            if emptied:
                MMLogger.get_current_instance().warning(
                    f'{self.ann_file}: {emptied} image(s) left without a '
                    'usable annotation are not used (filter_empty_gt)')
                data_list = [info for info in data_list if info['instances']]
        if not data_list:
            raise ValueError(
                f'No image left in {self.ann_file} after filtering '
                f'(filter_cfg={self.filter_cfg}): {len(self.data_list)} '
                'image(s) before, none with a usable annotation (or all '
                'smaller than min_size)')
        return data_list

    def _drop_reason(self, ann: dict, img: dict) -> Optional[str]:
        """Why ``CocoDataset`` would not (or should not) use the annotation,
        or None."""
        x, y, w, h = ann['bbox']
        if not all(v is not None and math.isfinite(v) for v in (x, y, w, h)):
            return 'with a NaN or infinite box'
        if w <= 0 or h <= 0:
            return 'with a zero or negative box width or height'
        if w < 1 or h < 1:
            return 'with a box under one pixel wide or high'
        if (min(x + w, img['width']) - max(x, 0) <= 0
                or min(y + h, img['height']) - max(y, 0) <= 0):
            return 'with a box outside the image'
        area = ann['area']
        if not (_is_number(area) and area > 0):
            return 'with an area that is not positive'
        category = ann['category_id']
        if category not in self.coco.cats:
            self._unknown_ids.add(category)
            return 'with an unknown category id'
        if category not in self.cat2label:
            return "with a category not among the dataset's classes"
        if 'segmentation' in self._fields and not ann['segmentation']:
            return 'with an empty segmentation'
        return None

    def parse_data_info(self, raw_data_info: dict) -> dict:
        img = raw_data_info['raw_img_info']
        where = f'The COCO annotation file {self.ann_file}'
        missing = [f for f in IMAGE_FIELDS if f not in img]
        if missing:
            raise ValueError(f'{where}: image {img.get("id")} has no '
                             f'{", ".join(missing)} field')
        usable = []
        for ann in raw_data_info['raw_ann_info']:
            self._num_anns += 1
            missing = [f for f in self._fields if f not in ann]
            what = (f'{where}: annotation {ann.get("id")} (image '
                    f'{img["file_name"]})')
            if missing:
                raise ValueError(f'{what} has no {", ".join(missing)} field '
                                 f'(required: {", ".join(self._fields)})')
            box = ann['bbox']
            if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(
                    v is None or _is_number(v) for v in box)):
                raise ValueError(f'{what}: bbox must be [x, y, width, height]'
                                 f' (4 numbers or null), got {box!r}')
            if ann.get('ignore', False):
                usable.append(ann)  # CocoDataset skips it
                continue
            reason = self._drop_reason(ann, img)
            if reason is None:
                usable.append(ann)
            else:
                self._dropped[reason] += 1
        return super().parse_data_info({
            **raw_data_info, 'raw_ann_info': usable
        })

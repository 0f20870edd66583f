# Copyright (c) mmsmlp contributors. All rights reserved.
"""ImageNet-format datasets whose annotation file is checked when built."""
import re
from typing import List, Optional

from mmengine.fileio import get_file_backend, list_from_file
from mmpretrain.datasets import ImageNet
from mmpretrain.registry import DATASETS

_INTEGER = re.compile(r'[+-]?\d+')
MAX_REPORTED = 10  # bad lines listed in an error (all are counted)


def parse_annotation_lines(lines: List[str], ann_file: str,
                           num_classes: Optional[int],
                           with_label: bool = True) -> List[tuple]:
    """``(filename, label)`` (``(filename, )`` without labels) of each
    non-blank line of an ImageNet-format annotation file
    (``<image path> <label>`` per line).

    Raises ``ValueError`` naming the file, the class count and the first
    bad lines (with their numbers): a line without label, a label that is
    not an integer, a label outside ``[0, num_classes)``; or, for a file
    without samples, the file.
    """
    samples, errors = [], []
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue  # blank lines hold no sample
        if not with_label:
            samples.append((line, ))
            continue
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            errors.append(f'line {number}: no label ({line!r})')
            continue
        filename, label = parts
        if not _INTEGER.fullmatch(label):
            errors.append(
                f'line {number}: label {label!r} is not an integer')
        elif num_classes is not None and not 0 <= int(label) < num_classes:
            errors.append(f'line {number}: label {int(label)} is out of '
                          f'range')
        elif num_classes is None and int(label) < 0:
            errors.append(f'line {number}: label {int(label)} is negative')
        else:
            samples.append((filename, int(label)))
    classes = ('' if num_classes is None else
               f' ({num_classes} classes: labels 0 to {num_classes - 1})')
    if errors:
        listed = '\n  '.join(errors[:MAX_REPORTED])
        more = (f'\n  ... and {len(errors) - MAX_REPORTED} more'
                if len(errors) > MAX_REPORTED else '')
        raise ValueError(
            f'{len(errors)} bad line(s) in the annotation file '
            f'{ann_file}{classes}:\n  {listed}{more}')
    if not samples:
        raise ValueError(f'The annotation file {ann_file} has no samples '
                         f'({len(lines)} line(s), none with an image path)')
    return samples


@DATASETS.register_module()
class CheckedImageNet(ImageNet):
    """mmpretrain's ``ImageNet`` whose annotation file is checked once, when
    the dataset is built (the lines are parsed anyway: no extra cost).

    A line without label, a label that is not an integer, a label out of
    range for the dataset's classes (``metainfo``'s ``classes``: 1000 by
    default, as ``ImageNet``) and an annotation file without samples raise
    a ``ValueError`` naming the file, the class count and the bad lines,
    instead of training on a wrong target (an out-of-range validation label
    scores as a miss: no error at all) or failing later from the loss.
    Datasets read from class folders (no annotation file) are
    ``ImageNet``'s. Arguments are ``ImageNet``'s.
    """

    def load_data_list(self) -> List[dict]:
        if not self.ann_file:
            return super().load_data_list()
        classes = self.metainfo.get('classes')
        samples = parse_annotation_lines(
            list_from_file(self.ann_file), self.ann_file,
            None if classes is None else len(classes),
            getattr(self, 'with_label', True))
        backend = get_file_backend(self.img_prefix, enable_singleton=True)
        if samples and len(samples[0]) == 1:
            return [{
                'img_path': backend.join_path(self.img_prefix, filename)
            } for filename, in samples]
        return [{
            'img_path': backend.join_path(self.img_prefix, filename),
            'gt_label': label
        } for filename, label in samples]

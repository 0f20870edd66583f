# Copyright (c) mmsmlp contributors. All rights reserved.
"""Checks of a config that fail early, with the name of what is wrong."""
import os.path as osp
from typing import Iterator, Sequence, Tuple

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def _is_local(path) -> bool:
    return isinstance(path, str) and bool(path) and '://' not in path


def _datasets(dataset, where: str) -> Iterator[Tuple[dict, str]]:
    """A dataset config and those it wraps (``dataset`` of RepeatDataset,
    ClassBalancedDataset, ...; ``datasets`` of ConcatDataset)."""
    if not isinstance(dataset, dict):
        return
    yield dataset, where
    yield from _datasets(dataset.get('dataset'), f'{where}.dataset')
    for i, inner in enumerate(dataset.get('datasets') or []):
        yield from _datasets(inner, f'{where}.datasets[{i}]')


def _missing_paths(dataset: dict) -> Iterator[Tuple[str, str]]:
    """``(key, path)`` of each local path of one dataset config that does
    not exist: ``data_root``, then ``ann_file`` and the ``data_prefix``
    values (relative ones under ``data_root``, as mmengine joins them)."""
    backend = (dataset.get('backend_args') or {}).get('backend', 'local')
    if backend != 'local':
        return
    data_root = dataset.get('data_root')
    if _is_local(data_root) and not osp.isdir(data_root):
        yield 'data_root', data_root
        return  # everything below it is missing too

    def under_root(path):
        return osp.join(data_root, path) if _is_local(data_root) else path

    ann_file = dataset.get('ann_file')
    if _is_local(ann_file) and not osp.isfile(under_root(ann_file)):
        yield 'ann_file', under_root(ann_file)
    prefix = dataset.get('data_prefix')
    prefixes = prefix.items() if isinstance(prefix, dict) else [
        ('img_path', prefix)
    ]
    for name, path in prefixes:
        if _is_local(path) and not osp.exists(under_root(path)):
            yield f'data_prefix.{name}', under_root(path)


def check_data_paths(cfg, dataloaders: Sequence[str] = DATALOADERS) -> None:
    """Raise ``FileNotFoundError`` naming every data path of the config's
    datasets that does not exist, e.g. ``train_dataloader: data_root
    data/imagenet does not exist``.

    Run by ``tools/train.py`` and ``tools/test.py`` before the Runner is
    built, so a wrong ``data_root``, ``ann_file`` or ``data_prefix`` is
    reported at once, not after the model is built or from a data-loader
    worker. Paths of remote backends (``s3://...``, ``backend_args``) are not
    checked.

    Args:
        cfg (Config | dict): The config.
        dataloaders (Sequence[str]): The dataloaders to check (absent or
            ``None`` ones are skipped). Defaults to train, val and test.
    """
    errors = []
    for name in dataloaders:
        loader = cfg.get(name)
        if not isinstance(loader, dict):
            continue
        for dataset, where in _datasets(loader.get('dataset'), name):
            where = name if where == f'{name}.dataset' else where
            errors += [
                f'{where}: {key} {path} does not exist'
                for key, path in _missing_paths(dataset)
            ]
    if errors:
        raise FileNotFoundError('\n'.join(errors))

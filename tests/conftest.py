# Copyright (c) mmsmlp contributors. All rights reserved.
import glob
import importlib.util
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch

# Without a GPU, mmsmlp's Triton kernels are tested under Triton's
# interpreter, which must be chosen before the kernels are defined.
if not torch.cuda.is_available():
    os.environ.setdefault('TRITON_INTERPRET', '1')

import mmsmlp  # noqa: F401  (registers SMLPNet and mmsmlp's modules)
from mmsmlp.datasets import make_imagenet

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The official code's outputs (tests/data/README.md says how they were made).
REFERENCE_DATA = osp.join(REPO_ROOT, 'tests', 'data')


def upstream_randaug_policies(policies):
    """A config's RandAugment policy list as mmpretrain's own ops would
    list it: mmsmlp's lookup-table ops named by upstream's types, the
    config's lists as upstream's tuples."""
    upstream = {'LUTAutoContrast': 'AutoContrast', 'LUTEqualize': 'Equalize'}
    return [{
        key: upstream.get(value, value) if key == 'type' else
        tuple(value) if isinstance(value, list) else value
        for key, value in policy.items()
    } for policy in policies]


def tiny_imagenet_options(root, epochs=1, train_workers=0):
    """``--cfg-options`` that train an ImageNet config on
    ``make_imagenet(root, num_classes=2, ...)``'s data in batches of 2
    (``train_workers`` loader workers for training, none for validation)
    and validate after each epoch, logging every iteration."""
    opts = [f'train_cfg.max_epochs={epochs}', 'train_cfg.val_interval=1',
            'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2',
            'model.head.num_classes=2', 'data_preprocessor.num_classes=2',
            'val_evaluator.topk=[1]', 'default_hooks.logger.interval=1']
    for split in ('train', 'val', 'test'):
        workers = train_workers if split == 'train' else 0
        opts += [f'{split}_dataloader.dataset.data_root={root}',
                 f'{split}_dataloader.num_workers={workers}',
                 f'{split}_dataloader.persistent_workers=False']
    return opts


def import_tool(path):
    """``tools/<path>`` (e.g. ``'analysis_tools/benchmark.py'``) imported
    as a module, its functions called in-process."""
    spec = importlib.util.spec_from_file_location(
        osp.splitext(osp.basename(path))[0] + '_tool',
        osp.join(REPO_ROOT, 'tools', path))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def run_tool(tool, *args):
    """Run ``tools/<tool>`` in a subprocess; return its output."""
    result = subprocess.run(
        [sys.executable, osp.join(REPO_ROOT, 'tools', tool), *args],
        capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[
        -3000:]
    return result.stdout + result.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_two_cpu_ranks(script, *args):
    """``tests/<script>`` under torch.distributed.run as two CPU
    processes (one thread each; the script initialises gloo)."""
    path = [p for p in (REPO_ROOT, os.environ.get('PYTHONPATH')) if p]
    env = {**os.environ, 'OMP_NUM_THREADS': '1',
           'PYTHONPATH': os.pathsep.join(path)}
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
         '2', '--master_port', str(free_port()),
         osp.join(REPO_ROOT, 'tests', script), *map(str, args)],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[
        -3000:]


def assert_same_gradients(out, want, inputs, want_inputs=None, **tolerance):
    """The gradients of ``out`` wrt ``inputs`` equal those of ``want`` wrt
    ``want_inputs`` (default: the same inputs), for one random output
    gradient; ``tolerance``: ``rtol`` and ``atol`` of ``assert_close``."""
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, inputs, grad)
    expected = torch.autograd.grad(want, want_inputs or inputs, grad)
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, **tolerance)


def read_scalars(work_dir):
    """The records of the latest run's ``vis_data/scalars.json``."""
    path = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                     'scalars.json')))[-1]
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope='session')
def imagenet_root(tmp_path_factory):
    """A small generated dataset in ImageNet's layout (10 classes)."""
    root = str(tmp_path_factory.mktemp('synthetic_imagenet'))
    make_imagenet(root, train_per_class=8, val_per_class=4, size=80)
    return root


@pytest.fixture(autouse=True)
def mmpretrain_default_scope():
    """Each test starts in mmpretrain's scope, whatever scope (mmdet, mmseg)
    the previous test or config left current; tests of other codebases set
    theirs."""
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')

# Copyright (c) mmsmlp contributors. All rights reserved.
"""The ImageNet configs' training-path hooks that change how data and
weights travel, not what is computed: ChannelsLastHook, LoaderSharingHook,
and AsyncMixup / AsyncCutMix against mmpretrain's Mixup / CutMix."""
import sys

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from mmengine.hooks import Hook
from mmengine.model import BaseModel, ImgDataPreprocessor
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from mmsmlp.engine import ChannelsLastHook, LoaderSharingHook


class Images(Dataset):
    """Images and targets; each sample also says which sharing strategy the
    process that made it (a loader worker) uses."""

    def __len__(self):
        return 8

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(inputs=torch.randint(0, 256, (3, 8, 8), generator=g,
                                         dtype=torch.uint8),
                    data_samples=dict(
                        y=torch.randn(4, generator=g),
                        strategy=mp.get_sharing_strategy()))


class ConvNet(BaseModel):

    def __init__(self):
        super().__init__(data_preprocessor=ImgDataPreprocessor(
            mean=[127.5] * 3, std=[64.] * 3))
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.seen = []  # (inputs channels_last?, strategies)

    def forward(self, inputs, data_samples=None, mode='loss'):
        self.seen.append(
            (inputs.is_contiguous(memory_format=torch.channels_last),
             list(data_samples['strategy'])))
        out = self.conv(inputs).mean((2, 3))
        return dict(loss=(out - data_samples['y']).square().mean())


def run(tmp_path, hooks, workers=0, epochs=2, resume=False, persistent=False,
        loaders=None):
    torch.manual_seed(0)
    model = ConvNet()
    runner = Runner(
        model=model, work_dir=str(tmp_path),
        train_dataloader=dict(
            dataset=Images(), sampler=dict(type='DefaultSampler',
                                           shuffle=False),
            batch_size=4, num_workers=workers, persistent_workers=persistent,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=epochs),
        custom_hooks=hooks, default_hooks=dict(
            checkpoint=dict(type='SafeCheckpointHook', interval=1),
            logger=None),
        resume=resume, default_scope='mmengine')
    runner.train()
    if loaders is not None:
        loaders.append(runner.train_dataloader)
    return model


def test_channels_last_hook_same_training_other_layout(tmp_path):
    plain = run(tmp_path / 'plain', [])
    hooks = [dict(type='ChannelsLastHook', cuda_only=False)]
    layout = run(tmp_path / 'cl', hooks)
    assert not plain.conv.weight.is_contiguous(
        memory_format=torch.channels_last)
    assert layout.conv.weight.is_contiguous(
        memory_format=torch.channels_last)
    assert all(cl for cl, _ in layout.seen) and len(layout.seen) == 4
    assert not any(cl for cl, _ in plain.seen)
    # the same training (convolution kernels differ in the last bits)
    torch.testing.assert_close(layout.conv.weight, plain.conv.weight)
    torch.testing.assert_close(layout.conv.bias, plain.conv.bias)


def test_channels_last_hook_exact_resume(tmp_path, monkeypatch):
    """A run stopped after its first epoch and resumed ends with the
    weights of the unbroken run (both in channels_last). On a GPU the
    Runner trains there: cuDNN's deterministic kernels, for a comparison
    to the bit."""
    monkeypatch.setattr(torch.backends.cudnn, 'deterministic', True)
    monkeypatch.setattr(torch.backends.cudnn, 'benchmark', False)
    hooks = [dict(type='ChannelsLastHook', cuda_only=False)]
    unbroken = run(tmp_path / 'unbroken', hooks)
    run(tmp_path / 'broken', hooks, epochs=1)
    resumed = run(tmp_path / 'broken', hooks, resume=True)
    assert len(resumed.seen) == 2  # the second epoch only
    assert resumed.conv.weight.is_contiguous(
        memory_format=torch.channels_last)
    for a, b in zip(unbroken.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_channels_last_hook_leaves_a_cpu_model_by_default():
    """cuda_only (the default) leaves a model on the CPU as it is, and so
    does enabled=False anywhere (the hook alone: a Runner on a GPU machine
    would put the model on the GPU)."""
    from types import SimpleNamespace

    from mmengine.logging import MMLogger
    for hook in (ChannelsLastHook(),
                 ChannelsLastHook(cuda_only=False, enabled=False)):
        model = ConvNet()
        runner = SimpleNamespace(
            model=model, logger=MMLogger.get_instance('test_layout'))
        hook.before_run(runner)
        assert not model.conv.weight.is_contiguous(
            memory_format=torch.channels_last)
        out = model.data_preprocessor(
            dict(inputs=torch.zeros(2, 3, 8, 8, dtype=torch.uint8)))
        assert not out['inputs'].is_contiguous(
            memory_format=torch.channels_last)


def test_channels_last_hook_removes_its_preprocessor_hook(tmp_path):
    hook = ChannelsLastHook(cuda_only=False)
    model = run(tmp_path, [hook])
    assert hook._handle is None
    out = model.data_preprocessor(
        dict(inputs=torch.zeros(2, 3, 8, 8, dtype=torch.uint8)))
    assert not out['inputs'].is_contiguous(memory_format=torch.channels_last)


def test_loader_sharing_hook_sets_the_workers_strategy_and_restores(
        tmp_path):
    before = (mp.get_sharing_strategy(), sys.getswitchinterval())
    other = 'file_system' if before[0] != 'file_system' else \
        'file_descriptor'
    model = run(tmp_path, [dict(type='LoaderSharingHook',
                                sharing_strategy=other,
                                switch_interval=0.001)], workers=2)
    # the workers made every batch under the hook's strategy
    assert [s for _, batch in model.seen for s in batch] == [other] * 16
    assert (mp.get_sharing_strategy(), sys.getswitchinterval()) == before


class KeepWorkers(Hook):
    """Keeps the train loader's worker processes (persistent: one set)."""

    def __init__(self):
        self.workers = {}

    def after_train_epoch(self, runner):
        iterator = runner.train_dataloader._iterator
        self.workers.update((w.pid, w) for w in iterator._workers)


@pytest.mark.parametrize('stop', [True, False])
def test_loader_sharing_hook_stops_persistent_workers(tmp_path, stop):
    """After the run the persistent workers are gone (left to the
    interpreter's exit, torch waits 5 s for each); the loader works again."""
    keep, loaders = KeepWorkers(), []
    run(tmp_path, [keep, dict(type='LoaderSharingHook', stop_workers=stop)],
        workers=2, persistent=True, loaders=loaders)
    workers = list(keep.workers.values())
    assert len(workers) == 2  # the same two in both epochs
    alive = [w.is_alive() for w in workers]
    loader = loaders[0]
    if stop:
        assert alive == [False, False] and loader._iterator is None
        assert sum(len(batch['inputs']) for batch in loader) == 8
    else:  # without the hook's stop, as torch leaves them
        assert alive == [True, True]
    loader._iterator = None  # (stop the workers the test left)


def test_loader_sharing_hook_names_the_valid_choices():
    with pytest.raises(ValueError, match='file_system'):
        LoaderSharingHook(sharing_strategy='shm')
    with pytest.raises(ValueError, match='switch_interval'):
        LoaderSharingHook(switch_interval=0)


@pytest.mark.parametrize('name', ['Mixup', 'CutMix'])
def test_async_batch_augments_equal_mmpretrains(name):
    from mmpretrain.registry import BATCH_AUGMENTS

    import mmsmlp.models  # noqa: F401 (registers AsyncMixup, AsyncCutMix)
    alpha = 0.8 if name == 'Mixup' else 1.0
    outputs = []
    for type_ in (name, 'Async' + name):
        augment = BATCH_AUGMENTS.build(dict(type=type_, alpha=alpha))
        np.random.seed(3)
        torch.manual_seed(3)
        inputs = torch.randn(6, 3, 16, 16)
        scores = nn.functional.one_hot(torch.arange(6) % 4, 4)
        outputs.append(augment(inputs, scores))
    (x, s), (ax, as_) = outputs
    assert torch.equal(ax, x) and torch.equal(as_, s)
    assert not torch.equal(s, s.round())  # mixed: soft scores

# Copyright (c) mmsmlp contributors. All rights reserved.
"""DeferredRuntimeInfoHook and FiniteLossHook(check_interval=N): the host
reads the loss values in batches, with the same logs, checkpoints and
errors as reading them every iteration."""
import glob
import json
import os.path as osp

import pytest
import torch
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

from mmsmlp.engine import FiniteLossHook


class Points(Dataset):

    def __len__(self):
        return 14

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return dict(x=torch.randn(3, generator=g), y=torch.randn(1,
                                                                 generator=g))


class Regressor(BaseModel):
    """Two loss terms (as mmengine's parse_losses logs them); the loss is NaN
    from the 1-based iteration ``nan_from`` on."""

    def __init__(self, nan_from=None):
        super().__init__()
        self.fc = nn.Linear(3, 1)
        self.nan_from = nan_from
        self.calls = 0

    def forward(self, x, y, mode='loss'):
        self.calls += 1
        err = self.fc(x) - y
        losses = dict(loss_l2=err.square().mean(), loss_l1=err.abs().mean())
        if self.nan_from is not None and self.calls >= self.nan_from:
            losses['loss_l1'] = losses['loss_l1'] * float('nan')
        return losses


def make_runner(work_dir, runtime_info, hooks=(), nan_from=None, epochs=2):
    torch.manual_seed(0)
    return Runner(
        model=Regressor(nan_from),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=Points(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=2,
            num_workers=0,
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        train_cfg=dict(by_epoch=True, max_epochs=epochs),
        default_hooks=dict(
            runtime_info=dict(type=runtime_info),
            logger=dict(type='LoggerHook', interval=3),
            checkpoint=dict(
                type='SafeCheckpointHook', interval=4, by_epoch=False)),
        custom_hooks=list(hooks),
        randomness=dict(seed=0),
        experiment_name=f'{osp.basename(str(work_dir))}_{runtime_info}',
        default_scope='mmengine')


def scalars_json(work_dir):
    path, = glob.glob(osp.join(str(work_dir), '*', 'vis_data',
                               'scalars.json'))
    rows = [json.loads(line) for line in open(path)]
    for row in rows:  # wall-clock times differ between runs
        for key in ('time', 'data_time', 'eta'):
            row.pop(key, None)
    return rows


def message_hub(path):
    """The logged scalars of a checkpoint's message hub but wall-clock
    times (SafeCheckpointHook's files load weights-only)."""
    hub = torch.load(path, map_location='cpu', weights_only=True)
    scalars = hub['message_hub']['log_scalars']
    assert 'train/loss' in scalars
    return {k: plain(v) for k, v in scalars.items() if 'time' not in k}


def plain(value):
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def test_deferred_runtime_info_gives_the_same_logs_and_checkpoints(
        tmp_path, monkeypatch):
    eager = make_runner(tmp_path / 'eager', 'RuntimeInfoHook')
    eager.train()
    deferred = make_runner(tmp_path / 'deferred', 'DeferredRuntimeInfoHook')
    reads = []  # the iterations at which train/ losses reach the hub
    update = deferred.message_hub.update_scalar

    def spy(key, value, *args, **kwargs):
        if key == 'train/loss':
            reads.append(deferred.iter + 1)
        return update(key, value, *args, **kwargs)

    monkeypatch.setattr(deferred.message_hub, 'update_scalar', spy)
    deferred.train()

    assert scalars_json(tmp_path / 'eager') == scalars_json(tmp_path /
                                                            'deferred')
    # every iteration's loss reached the hub, in order ...
    assert len(reads) == 14
    # ... but in batches: the first iteration, the logger's (every 3 in the
    # epoch: 3, 6, 10, 13; and every 3 in the run: 9, 12), the epochs' ends
    # (7, 14) and the checkpoints' (every 4)
    assert sorted(set(reads)) == [1, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14]
    losses = [h for k, h in eager.message_hub.log_scalars.items()
              if k == 'train/loss']
    assert (deferred.message_hub.log_scalars['train/loss'].data[0].tolist()
            == losses[0].data[0].tolist())
    for ckpt in ('iter_4.pth', 'iter_8.pth', 'iter_12.pth', 'iter_14.pth'):
        assert (message_hub(tmp_path / 'eager' / ckpt) == message_hub(
            tmp_path / 'deferred' / ckpt)), ckpt


def test_finite_loss_checked_every_n_iterations_names_the_first(tmp_path):
    runner = make_runner(
        tmp_path / 'late', 'DeferredRuntimeInfoHook',
        hooks=[dict(type='FiniteLossHook', check_interval=5)], nan_from=9)
    with pytest.raises(
            FloatingPointError,
            match=r'loss is nan at iteration 9 \(epoch 2\) '
            r'\(losses checked every 5 iterations\)'):
        runner.train()  # read at iteration 10
    assert runner.iter == 9  # stopped in iteration 10 (0-based 9)
    saved = sorted(osp.basename(p)
                   for p in glob.glob(str(tmp_path / 'late' / '*.pth')))
    assert saved == ['iter_4.pth', 'iter_8.pth']


def test_finite_loss_checked_before_a_checkpoint_is_saved(tmp_path):
    runner = make_runner(
        tmp_path / 'ckpt', 'RuntimeInfoHook',
        hooks=[dict(type='FiniteLossHook', check_interval=50)], nan_from=2)
    with pytest.raises(FloatingPointError, match=r'at iteration 2 '):
        runner.train()  # the iteration-4 checkpoint checks first
    assert runner.iter == 3
    assert not glob.glob(str(tmp_path / 'ckpt' / '*.pth'))


def test_finite_loss_every_iteration_by_default(tmp_path):
    runner = make_runner(
        tmp_path / 'now', 'RuntimeInfoHook',
        hooks=[dict(type='FiniteLossHook')], nan_from=3)
    with pytest.raises(FloatingPointError,
                       match=r'at iteration 3 \(epoch 1\)$'):
        runner.train()


@pytest.mark.parametrize('value', [0, -1, 2.5])
def test_finite_loss_check_interval_must_be_positive(value):
    with pytest.raises(ValueError, match='check_interval must be an integer'):
        FiniteLossHook(check_interval=value)

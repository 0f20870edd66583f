# Copyright (c) mmsmlp contributors. All rights reserved.
"""Training, evaluation and resuming through tools/train.py and
tools/test.py (mmengine's Runner) on generated ImageNet-format data."""
import math
import os.path as osp

import torch

from .conftest import REPO_ROOT, read_scalars, run_tool

QUICKSTART = osp.join(REPO_ROOT, 'configs', 'quickstart',
                      'smlpnet-mini_1xb32_synthetic-in1k-format.py')


def quick_options(data_root, epochs):
    return [
        '--cfg-options', f'train_dataloader.dataset.data_root={data_root}',
        f'val_dataloader.dataset.data_root={data_root}',
        f'test_dataloader.dataset.data_root={data_root}',
        f'train_cfg.max_epochs={epochs}', 'train_cfg.val_interval=1',
        'default_hooks.checkpoint.interval=1',
        'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
        'test_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.persistent_workers=False',
        'test_dataloader.persistent_workers=False'
    ]


def test_train_evaluate_resume_test(imagenet_root, tmp_path):
    work_dir = str(tmp_path / 'work')
    run_tool('train.py', QUICKSTART, '--work-dir', work_dir,
             *quick_options(imagenet_root, 2))
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    assert any('accuracy/top1' in s for s in read_scalars(work_dir))

    # SafeCheckpointHook's checkpoints hold only what weights-only loading
    # accepts (mmengine's own hold objects torch >= 2.6 refuses) ...
    for name in ('epoch_2.pth', 'last_checkpoint'):
        assert osp.exists(osp.join(work_dir, name))
    assert torch.serialization.get_unsafe_globals_in_checkpoint(
        osp.join(work_dir, 'epoch_2.pth')) == []
    # ... and resume the run for a third epoch.
    log = run_tool('train.py', QUICKSTART, '--work-dir', work_dir,
                   '--resume', *quick_options(imagenet_root, 3))
    assert 'resumed epoch: 2' in log
    ckpt = torch.load(osp.join(work_dir, 'epoch_3.pth'), weights_only=True)
    assert ckpt['meta']['epoch'] == 3
    assert 'optimizer' in ckpt and 'message_hub' in ckpt

    log = run_tool('test.py', QUICKSTART,
                   osp.join(work_dir, 'epoch_3.pth'), '--work-dir',
                   str(tmp_path / 'test'), *quick_options(imagenet_root, 3))
    assert 'accuracy/top1' in log


def test_compile_hook_compiles_the_forward(imagenet_root, tmp_path):
    """CompileForwardHook (what `--compile` adds) compiles the model's
    forward (not mmengine's whole train_step), with its arguments, and
    training goes on through it."""
    config = tmp_path / 'compiled.py'
    config.write_text(
        f'_base_ = [{QUICKSTART!r}]\n'
        "custom_hooks = [dict(type='CompileForwardHook', backend='eager')]\n")
    work_dir = str(tmp_path / 'work')
    log = run_tool('train.py', str(config), '--work-dir', work_dir,
                   *quick_options(imagenet_root, 2))
    assert ("Compiled ImageClassifier.forward with torch.compile("
            "{'backend': 'eager'})") in log
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))
    losses = [s['loss'] for s in read_scalars(work_dir) if 'loss' in s]
    assert losses and all(math.isfinite(v) for v in losses)

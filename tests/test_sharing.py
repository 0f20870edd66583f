# Copyright (c) mmsmlp contributors. All rights reserved.
"""Sharing models as OpenMMLab codebases do: publish_model.py, the mim
extension (``mim search/train/test mmsmlp`` on an installed wheel), and
tools/test.py --show-dir for classification (detection and segmentation:
tests/test_detection.py, tests/test_segmentation.py)."""
import glob
import hashlib
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

from .conftest import REPO_ROOT, run_tool

QUICKSTART = osp.join(REPO_ROOT, 'configs', 'quickstart',
                      'smlpnet-mini_1xb32_synthetic-in1k-format.py')


def quick_options(imagenet_root, epochs=1):
    return [
        '--cfg-options', f'train_dataloader.dataset.data_root={imagenet_root}',
        f'val_dataloader.dataset.data_root={imagenet_root}',
        f'test_dataloader.dataset.data_root={imagenet_root}',
        f'train_cfg.max_epochs={epochs}', 'train_dataloader.num_workers=0',
        'val_dataloader.num_workers=0', 'test_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.persistent_workers=False',
        'test_dataloader.persistent_workers=False'
    ]


def quickstart_model():
    cfg = Config.fromfile(QUICKSTART)
    return MODELS.build(cfg.model)


def runner_checkpoint(model, history_buffers=True):
    """What mmengine's Runner saves with an EMAHook: the EMA weights in
    ``state_dict``, the raw ones in ``ema_state_dict`` (under ``module.``),
    the optimizer, the message hub's state (HistoryBuffers of numpy
    values) and meta with numpy scalars."""
    from mmengine.logging import MessageHub
    raw = {k: v.clone() for k, v in model.state_dict().items()}
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in raw.items()}
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 3, 64, 64), mode='tensor').sum().backward()
    optimizer.step()
    hub = MessageHub.get_instance('publish_test')
    hub.update_scalar('train/loss', np.float64(1.5))
    hub.update_scalar('train/lr', 0.1)
    hub.update_info('epoch_seed', np.int64(7))
    message_hub = hub.state_dict()
    meta = dict(epoch=3, iter=30, seed=np.int64(42),
                dataset_meta=dict(classes=('a', 'b')),
                mmengine_version='0.10.7')
    if not history_buffers:
        # as SafeCheckpointHook writes them: plain data
        from mmsmlp.compat import to_plain_data
        message_hub, meta = to_plain_data(message_hub), to_plain_data(meta)
    return dict(
        meta=meta,
        state_dict=ema,
        ema_state_dict={
            **{f'module.{k}': v for k, v in raw.items()}, 'steps':
            torch.tensor(30)
        },
        optimizer=optimizer.state_dict(),
        message_hub=message_hub,
        param_schedulers=[dict(last_epoch=3, base_lrs=[1e-3])])


# --- publish_model.py --------------------------------------------------------


@pytest.mark.parametrize('no_ema,history_buffers', [(False, False),
                                                     (True, True)])
def test_publish_runner_checkpoint(tmp_path, no_ema, history_buffers):
    """SafeCheckpointHook's checkpoints (plain data): loaded weights-only;
    mmengine's HistoryBuffers (pickled through getattr): refused, and
    published with --trust-checkpoint."""
    model = quickstart_model()
    src = str(tmp_path / 'epoch_3.pth')
    ckpt = runner_checkpoint(model, history_buffers)
    torch.save(ckpt, src)
    if history_buffers:
        # torch >= 2.6 refuses it weights-only (what broke upstream's tool)
        with pytest.raises(Exception, match='Weights only load failed'):
            torch.load(src, weights_only=True)

    args = [src, str(tmp_path / 'smlpnet-mini.pth')]
    if no_ema:
        args.append('--no-ema')
    if history_buffers:
        result = subprocess.run(
            [sys.executable, osp.join(REPO_ROOT, 'tools', 'model_converters',
                                      'publish_model.py'), *args],
            capture_output=True, text=True, cwd=REPO_ROOT)
        assert result.returncode != 0
        assert 'Unsupported global' in result.stderr
        assert 'HistoryBuffer' in result.stderr
        assert '--trust-checkpoint' in result.stderr
        args.append('--trust-checkpoint')
    log = run_tool('model_converters/publish_model.py', *args)
    (final, ) = glob.glob(str(tmp_path / 'smlpnet-mini_*.pth'))
    assert f'Published {final}' in log
    match = re.fullmatch(r'smlpnet-mini_(\d{8})-([0-9a-f]{8})\.pth',
                         osp.basename(final))
    assert match
    with open(final, 'rb') as f:
        assert hashlib.sha256(f.read()).hexdigest()[:8] == match.group(2)
    assert not glob.glob(str(tmp_path / '.tmp_*'))

    # loads with torch's plain weights-only unpickler, nothing allowed extra
    published = torch.load(final, weights_only=True)
    assert set(published) == {'state_dict', 'meta'}
    want = {k[len('module.'):]: v for k, v in ckpt['ema_state_dict'].items()
            if k.startswith('module.')} if no_ema else ckpt['state_dict']
    assert published['state_dict'].keys() == want.keys()
    for k, v in want.items():
        assert torch.equal(published['state_dict'][k], v), k
    meta = published['meta']
    assert meta['seed'] == 42 and type(meta['seed']) is int
    assert meta['dataset_meta'] == {'classes': ('a', 'b')}
    assert 'mmsmlp_version' in meta
    # and it loads into the model strictly
    model.load_state_dict(published['state_dict'], strict=True)


def test_publish_adds_dataset_meta_to_a_bare_state_dict(tmp_path):
    src = str(tmp_path / 'converted.pth')
    torch.save(quickstart_model().state_dict(), src)
    run_tool('model_converters/publish_model.py', src,
             str(tmp_path / 'out.pth'), '--dataset-type', 'ImageNet')
    (final, ) = glob.glob(str(tmp_path / 'out_*.pth'))
    meta = torch.load(final, weights_only=True)['meta']
    assert len(meta['dataset_meta']['classes']) == 1000


def test_publish_refuses_code_in_a_checkpoint(tmp_path):
    marker = tmp_path / 'ran'

    class Payload:

        def __reduce__(self):
            return (os.system, (f'touch {marker}', ))

    src = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {}, 'meta': Payload()}, src)
    result = subprocess.run([
        sys.executable,
        osp.join(REPO_ROOT, 'tools', 'model_converters', 'publish_model.py'),
        src, str(tmp_path / 'out.pth')
    ], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode != 0
    assert f'{src} holds objects that weights-only loading refuses' in \
        result.stderr
    assert not marker.exists()
    assert not glob.glob(str(tmp_path / 'out*'))


# --- tools/test.py --show-dir (classification) -------------------------------


def test_show_dir_draws_every_test_image(imagenet_root, tmp_path):
    ckpt = str(tmp_path / 'mini.pth')
    torch.save({'state_dict': quickstart_model().state_dict()}, ckpt)
    work_dir = str(tmp_path / 'test')
    run_tool('test.py', QUICKSTART, ckpt, '--work-dir', work_dir,
             '--show-dir', 'vis', *quick_options(imagenet_root))
    images = glob.glob(osp.join(imagenet_root, 'val', '*', '*.JPEG'))
    assert len(images) == 40
    pictures = glob.glob(osp.join(work_dir, 'vis', '*.png'))
    assert sorted(osp.basename(p) for p in pictures) == sorted(
        f'{osp.basename(p)}_0.png' for p in images)
    assert not glob.glob(osp.join(REPO_ROOT, '*.png'))


# --- the mim extension -------------------------------------------------------


@pytest.fixture(scope='module')
def installed_wheel(tmp_path_factory):
    """mmsmlp built as a wheel (setup.py copies tools, configs and
    model-index.yml into mmsmlp/.mim) from a copy of the repository, and
    installed into a folder of its own; an environment that imports it."""
    tmp = tmp_path_factory.mktemp('wheel')
    src = tmp / 'src'
    files = subprocess.run(['git', 'ls-files', '--cached', '--others',
                            '--exclude-standard'], cwd=REPO_ROOT,
                           capture_output=True, text=True,
                           check=True).stdout.split()
    for name in files:
        if name.startswith('tests/') or not osp.isfile(
                osp.join(REPO_ROOT, name)):
            continue
        os.makedirs(src / osp.dirname(name), exist_ok=True)
        shutil.copy2(osp.join(REPO_ROOT, name), src / name)
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check']
    subprocess.run(pip + ['wheel', '--no-deps', '--no-build-isolation', '-q',
                          '-w', str(tmp / 'dist'), str(src)], check=True,
                   capture_output=True)
    (wheel, ) = glob.glob(str(tmp / 'dist' / 'mmsmlp-*.whl'))
    site = tmp / 'site'
    subprocess.run(pip + ['install', '--no-deps', '-q', '--target',
                          str(site), wheel], check=True, capture_output=True)
    env = dict(os.environ, PYTHONPATH=str(site))
    return site, env


def mim(env, *args, cwd):
    result = subprocess.run(
        [sys.executable, '-m', 'mim', *args], env=env, cwd=cwd,
        capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[
        -3000:]
    return result.stdout + result.stderr


def test_wheel_holds_the_mim_files(installed_wheel):
    site, _ = installed_wheel
    mim_dir = site / 'mmsmlp' / '.mim'
    for path in ('model-index.yml', 'configs/smlpnet/metafile.yml',
                 'configs/smlpnet/smlpnet-t_8xb128_in1k.py',
                 'configs/_base_/smlpnet-t_mask-rcnn.py', 'tools/train.py',
                 'tools/test.py', 'tools/dist_train.sh'):
        assert (mim_dir / path).is_file(), path


def test_mim_search_lists_the_models(installed_wheel, tmp_path):
    _, env = installed_wheel
    log = mim(env, 'search', 'mmsmlp', cwd=tmp_path)
    for name in ('smlpnet-t_8xb128_in1k', 'smlpnet-s_3rdparty_in1k',
                 'mask-rcnn_smlpnet-t_fpn_1x_coco',
                 'smlpnet-b_upernet_8xb2-160k_ade20k-512x512'):
        assert name in log


def test_mim_train_and_test(installed_wheel, imagenet_root, tmp_path):
    """`mim train/test mmsmlp CONFIG` run the installed package's
    .mim/tools/train.py and test.py; the config is found by its name."""
    site, env = installed_wheel
    work_dir = str(tmp_path / 'work')
    name = osp.basename(QUICKSTART)
    # 2 epochs: the quick-start schedule's warm-up needs more than one
    log = mim(env, 'train', 'mmsmlp', name, '--work-dir', work_dir,
              *quick_options(imagenet_root, 2), cwd=tmp_path)
    tools = osp.join(str(site), 'mmsmlp', '.mim', 'tools')
    assert f'{osp.join(tools, "train.py")} ' in log  # the command it ran
    assert 'Training finished successfully' in log
    ckpt = osp.join(work_dir, 'epoch_2.pth')
    assert osp.isfile(ckpt)
    log = mim(env, 'test', 'mmsmlp', name, '--checkpoint', ckpt,
              '--work-dir', str(tmp_path / 'test'),
              *quick_options(imagenet_root), cwd=tmp_path)
    assert f'{osp.join(tools, "test.py")} ' in log
    assert 'accuracy/top1' in log


def test_mim_train_with_the_editable_install(imagenet_root, tmp_path):
    """The README's install is pip's PEP 660 editable install, which leaves
    only metadata in site-packages, where openmim 0.3.9 looks for the
    package (open-mmlab/mim#114). With the repository on PYTHONPATH (as
    docs/model_zoo.md says) mim finds the repository's package and runs its
    tools through the `mmsmlp/.mim` links setup.py makes."""
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    work_dir = str(tmp_path / 'work')
    log = mim(env, 'train', 'mmsmlp', osp.basename(QUICKSTART), '--work-dir',
              work_dir, *quick_options(imagenet_root, 2), cwd=tmp_path)
    script = osp.join(REPO_ROOT, 'mmsmlp', '.mim', 'tools', 'train.py')
    assert f'{script} ' in log  # the command it ran
    assert osp.samefile(script, osp.join(REPO_ROOT, 'tools', 'train.py'))
    assert 'Training finished successfully' in log
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))

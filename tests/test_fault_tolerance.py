# Copyright (c) mmsmlp contributors. All rights reserved.
"""Fault tolerance (issue 7): each way a run can break, and what the user
gets. Training runs through tools/train.py / tools/test.py (subprocesses) or
mmengine's Runner built from the quick-start config, on generated data."""
import glob
import json
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import Runner, load_checkpoint

from mmsmlp.models.utils.sparse_mlp import resample_axial_mixing
from .conftest import REPO_ROOT

QUICKSTART = osp.join(REPO_ROOT, 'configs', 'quickstart',
                      'smlpnet-mini_1xb32_synthetic-in1k-format.py')
TOOLS = osp.join(REPO_ROOT, 'tools')
# The tests' helper module (a NaN loss) is importable by the tools.
# the repository first, then what the caller's path holds (packages
# installed with --target, e.g. on the GPU machine)
ENV = {**os.environ, 'PYTHONPATH': os.pathsep.join(
    p for p in (REPO_ROOT, os.environ.get('PYTHONPATH')) if p)}

# 32 training images in batches of 16: 2 iterations per epoch.
SMALL = dict(train_images=32, val_images=20, batch_size=16)


def options(data_root, epochs=1, workers=0):
    """--cfg-options for a short run of the quick-start config."""
    opts = [
        f'train_cfg.max_epochs={epochs}', 'train_cfg.val_interval=1',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1',
        f'train_dataloader.batch_size={SMALL["batch_size"]}',
        f'train_dataloader.dataset.indices={SMALL["train_images"]}',
        f'val_dataloader.dataset.indices={SMALL["val_images"]}'
    ]
    for split in ('train', 'val', 'test'):
        opts.append(f'{split}_dataloader.dataset.data_root={data_root}')
        if workers == 0:
            opts += [
                f'{split}_dataloader.num_workers=0',
                f'{split}_dataloader.persistent_workers=False'
            ]
    return opts


def tool_command(tool, config, *args, cfg_options=()):
    command = [sys.executable, osp.join(TOOLS, tool), config, *args]
    return command + (['--cfg-options', *cfg_options] if cfg_options else [])


def run_all(*commands):
    """Run the commands concurrently; ``(returncode, stdout + stderr)``
    of each."""
    procs = [
        subprocess.Popen(
            c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=REPO_ROOT, env=ENV) for c in commands
    ]
    results = []
    for proc in procs:
        out = proc.communicate()[0]
        results.append((proc.returncode, out))
    return results


def quick_cfg(data_root, work_dir, epochs, name):
    """The quick-start config, short, for an in-process Runner."""
    cfg = Config.fromfile(QUICKSTART)
    for split in ('train', 'val', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.update(num_workers=0, persistent_workers=False)
        loader.dataset.data_root = data_root
    cfg.train_dataloader.batch_size = SMALL['batch_size']
    cfg.train_dataloader.dataset.indices = SMALL['train_images']
    cfg.val_dataloader.dataset.indices = SMALL['val_images']
    cfg.train_cfg.update(max_epochs=epochs, val_interval=1)
    cfg.default_hooks.checkpoint.interval = 1
    cfg.default_hooks.logger.interval = 1
    cfg.work_dir = work_dir
    cfg.experiment_name = name  # one logger per Runner in this process
    return cfg


def state_dict(path):
    return torch.load(path, map_location='cpu',
                      weights_only=True)['state_dict']


def last_scalars(work_dir):
    """The final validation metrics of the latest run in ``work_dir``."""
    path = sorted(glob.glob(osp.join(work_dir, '2*', 'vis_data',
                                     'scalars.json')))[-1]
    with open(path) as f:
        lines = [json.loads(line) for line in f]
    return [s for s in lines if 'accuracy/top1' in s][-1]


def wait_for(predicate, proc, timeout=300):
    start = time.time()
    while not predicate():
        assert proc.poll() is None, 'the run ended before it was killed'
        assert time.time() - start < timeout
        time.sleep(0.02)


# 1. SIGKILL + --resume = an unbroken run ----------------------------------
def test_killed_and_resumed_run_equals_unbroken_run(imagenet_root, tmp_path):
    # Data-loader workers as in the real configs (2, persistent): their
    # randomness must be restored as well.
    # With the ImageNet recipe's per-rank seeding (seed + rank; the sampler
    # seeded from rank 0's generator).
    cfg_options = options(imagenet_root, epochs=3, workers=2) + [
        'randomness.deterministic=True', 'randomness.diff_rank_seed=True'
    ]
    unbroken, broken = str(tmp_path / 'unbroken'), str(tmp_path / 'broken')

    def start(work_dir, *args):
        # output to a file: the killed run's orphaned workers may keep a
        # pipe open for a while
        with open(f'{work_dir}.out', 'a') as out:
            return subprocess.Popen(
                tool_command('train.py', QUICKSTART, '--work-dir', work_dir,
                             *args, cfg_options=cfg_options),
                stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=ENV)

    def log(work_dir):
        with open(f'{work_dir}.out') as f:
            return f.read()

    killed, reference = start(broken), start(unbroken)
    # SIGKILL the run once its first epoch is saved, then resume it.
    wait_for(
        lambda: all(
            osp.isfile(osp.join(broken, f))
            for f in ('epoch_1.pth', 'last_checkpoint')), killed)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    assert not osp.exists(osp.join(broken, 'epoch_3.pth'))
    resumed = start(broken, '--resume')
    assert reference.wait() == 0, log(unbroken)[-3000:]
    assert resumed.wait() == 0, log(broken)[-3000:]
    assert re.search(r'resumed epoch: [12],', log(broken))

    final, resumed = (state_dict(osp.join(w, 'epoch_3.pth'))
                      for w in (unbroken, broken))
    assert final.keys() == resumed.keys()
    different = [k for k in final if not torch.equal(final[k], resumed[k])]
    assert not different, different
    metrics = [last_scalars(w) for w in (unbroken, broken)]
    assert metrics[0]['step'] == metrics[1]['step'] == 3
    for key in ('accuracy/top1', 'accuracy/top5'):
        assert metrics[0][key] == metrics[1][key]


# 2. A kill while a checkpoint is written ----------------------------------
def test_failed_checkpoint_write_keeps_last_checkpoint_valid(
        imagenet_root, tmp_path, monkeypatch):
    work_dir = str(tmp_path / 'work')
    cfg = quick_cfg(imagenet_root, work_dir, 3, 'ft_ckpt_write')
    cfg.default_hooks.checkpoint.update(max_keep_ckpts=1, save_best=None)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None

    # The third checkpoint dies part-way through serialization.
    save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get('meta', {}).get('epoch') == 3:
            f.write(b'\x80\x02 partial checkpoint')
            raise OSError('killed while saving')
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, 'save', dying_save)
    runner = Runner.from_cfg(cfg)
    with pytest.raises(OSError, match='killed while saving'):
        runner.train()

    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        last = f.read().strip()
    assert last == osp.join(work_dir, 'epoch_2.pth')
    assert torch.load(last, weights_only=True)['meta']['epoch'] == 2
    # max_keep_ckpts=1 still removes older checkpoints once a new one is
    # complete, and no temporary file is left behind.
    files = os.listdir(work_dir)
    assert [f for f in files if f.endswith('.pth')] == ['epoch_2.pth']
    assert not [f for f in files if f.startswith('.')]


def test_killed_checkpoint_write_leaves_no_partial_file(tmp_path):
    """SafeCheckpointHook's save, killed mid-write: no partial file under
    the checkpoint's name."""
    path = str(tmp_path / 'out' / 'epoch_1.pth')
    code = (
        'import os, sys, mmsmlp\n'
        'from mmengine.fileio.backends import LocalBackend\n'
        'from mmsmlp.engine.hooks.safe_checkpoint_hook import '
        '_AtomicSaveView\n'
        'class Runner:\n'
        '    work_dir = os.path.dirname(sys.argv[1])\n'
        '    def save_checkpoint(self, out_dir, filename, **kwargs):\n'
        '        LocalBackend().put(bytes(1_500_000_000),\n'
        '                           os.path.join(out_dir, filename))\n'
        'os.makedirs(Runner.work_dir)\n'
        '_AtomicSaveView(Runner()).save_checkpoint(\n'
        '    Runner.work_dir, os.path.basename(sys.argv[1]))\n')
    proc = subprocess.Popen([sys.executable, '-c', code, path],
                            cwd=REPO_ROOT, env=ENV)
    folder = osp.dirname(path)

    def writing():
        files = glob.glob(osp.join(folder, '*')) + glob.glob(
            osp.join(folder, '.*'))
        return any(osp.getsize(f) > 0 for f in files)

    try:
        wait_for(writing, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert not osp.exists(path), (
            f'a partial file of {osp.getsize(path)} bytes was left')
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_disk_full_names_the_path_and_the_space(tmp_path):
    """ENOSPC while saving: the error names the checkpoint and the room it
    needs; the earlier checkpoint is intact and no temporary file stays."""
    import errno

    from mmsmlp.engine.hooks.safe_checkpoint_hook import _AtomicSaveView
    folder = str(tmp_path)
    with open(osp.join(folder, 'epoch_1.pth'), 'wb') as f:
        f.write(bytes(3 * 2**20))

    class FullDiskRunner:
        work_dir = folder

        def save_checkpoint(self, out_dir, filename, **kwargs):
            with open(osp.join(out_dir, filename), 'wb') as f:
                f.write(b'partial')
            raise OSError(errno.ENOSPC, 'No space left on device')

    with pytest.raises(OSError) as info:
        _AtomicSaveView(FullDiskRunner()).save_checkpoint(
            folder, 'epoch_2.pth')
    message = str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert osp.join(folder, 'epoch_2.pth') in message
    assert 'about 3 MiB' in message
    assert sorted(os.listdir(folder)) == ['epoch_1.pth']


# 3. Corrupt or truncated images -------------------------------------------
@pytest.fixture
def broken_imagenet(imagenet_root, tmp_path):
    """A copy of the data with a garbage file and a truncated JPEG among the
    first training images."""
    root = str(tmp_path / 'broken_data')
    shutil.copytree(imagenet_root, root)
    garbage = osp.join(root, 'train', 'circle', 'circle_00000.JPEG')
    truncated = osp.join(root, 'train', 'circle', 'circle_00001.JPEG')
    with open(garbage, 'wb') as f:
        f.write(os.urandom(3000))
    with open(truncated, 'rb') as f:
        data = f.read()
    with open(truncated, 'wb') as f:
        f.write(data[:len(data) // 2])
    return root, garbage, truncated


def build_train_dataset(data_root, **load_args):
    from mmpretrain.registry import DATASETS
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(QUICKSTART).train_dataloader.dataset
    cfg.data_root = data_root
    cfg.pipeline[0].update(load_args)
    return DATASETS.build(cfg)


def test_broken_image_raises_error_naming_it(broken_imagenet, monkeypatch):
    root, garbage, truncated = broken_imagenet
    dataset = build_train_dataset(root)
    paths = [dataset.get_data_info(i)['img_path'] for i in range(4)]
    with pytest.raises(ValueError, match=f'Broken image {garbage}: cannot '
                       'be decoded'):
        dataset[paths.index(garbage)]
    assert dataset[2]['inputs'].shape == (3, 64, 64)  # intact images load

    # A truncated JPEG, with a decoder that fills in the missing part
    # silently (as OpenCV 4, or PIL where LOAD_TRUNCATED_IMAGES is set).
    from PIL import ImageFile
    monkeypatch.setattr(ImageFile, 'LOAD_TRUNCATED_IMAGES', True)
    dataset = build_train_dataset(root, imdecode_backend='pillow')
    with pytest.raises(ValueError, match=f'Broken image {truncated}: '
                       r'truncated JPEG \(no end-of-image marker\)'):
        dataset[paths.index(truncated)]
    # Data after the end of a JPEG is legal: not an error.
    intact = paths[2]
    with open(intact, 'ab') as f:
        f.write(b'trailing data')
    assert dataset[2]['inputs'].shape == (3, 64, 64)


def test_broken_images_skipped_and_counted_on_request(broken_imagenet,
                                                      tmp_path):
    root, garbage, truncated = broken_imagenet
    work_dir = str(tmp_path / 'work')
    cfg = quick_cfg(root, work_dir, 1, 'ft_skip_broken')
    cfg.train_dataloader.dataset.pipeline[0].skip_broken = True
    cfg.param_scheduler = cfg.param_scheduler[0]  # the warm-up epoch
    runner = Runner.from_cfg(cfg)
    runner.train()  # goes on past both broken images
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
    log_file = osp.join(work_dir, runner.timestamp, f'{runner.timestamp}.log')
    with open(log_file) as f:
        log = f.read()
    skips = [line for line in log.splitlines() if 'Skipped broken' in line]
    # both are met (a random replacement may hit one again)
    assert all(any(p in s for s in skips) for p in (garbage, truncated))
    for count, line in enumerate(skips, 1):
        assert f'{count} broken image(s) skipped so far' in line


def test_checked_loading_keeps_inferencer_working(imagenet_root):
    # mmpretrain's inferencer drops the config's loading step by name (it
    # loads images itself): CheckedLoadImageFromFile must go too.
    from mmpretrain.apis import ImageClassificationInferencer
    inferencer = ImageClassificationInferencer(QUICKSTART, device='cpu')
    image = osp.join(imagenet_root, 'val', 'ring', 'ring_00000.JPEG')
    assert 0 <= inferencer(image)[0]['pred_label'] < 1000


# 4. Missing data root or annotation file ----------------------------------
def test_missing_data_paths_reported_before_training(imagenet_root,
                                                     tmp_path):
    missing_root = str(tmp_path / 'no_such_dir')
    missing_ann = 'meta/no_such_file.txt'
    runs = run_all(
        tool_command(
            'train.py', QUICKSTART, '--work-dir', str(tmp_path / 'w1'),
            cfg_options=options(imagenet_root, workers=2) +
            [f'train_dataloader.dataset.data_root={missing_root}']),
        tool_command(
            'train.py', QUICKSTART, '--work-dir', str(tmp_path / 'w2'),
            cfg_options=options(imagenet_root, workers=2) +
            [f'val_dataloader.dataset.ann_file={missing_ann}']))
    expected = [
        f'train_dataloader: data_root {missing_root} does not exist',
        'val_dataloader: ann_file '
        f'{osp.join(imagenet_root, missing_ann)} does not exist'
    ]
    for (code, log), message, work in zip(runs, expected, ('w1', 'w2')):
        assert code != 0
        assert f'FileNotFoundError: {message}' in log, log[-3000:]
        assert 'DataLoader worker' not in log
        # reported before the Runner (model, datasets, workers) is built
        assert not osp.exists(tmp_path / work)


# 5. Wrong arch name or arch dict ------------------------------------------
def test_wrong_arch_reported_with_choices(imagenet_root, tmp_path):
    config = str(tmp_path / 'no_depths.py')
    with open(config, 'w') as f:
        f.write(f'_base_ = [{QUICKSTART!r}]\n'
                'model = dict(backbone=dict(arch=dict(\n'
                '    _delete_=True, embed_dims=32, mlp_ratio=3)))\n')
    runs = run_all(
        tool_command(
            'train.py', QUICKSTART, '--work-dir', str(tmp_path / 'w1'),
            cfg_options=options(imagenet_root) +
            ['model.backbone.arch=tinyy']),
        tool_command(
            'train.py', config, '--work-dir', str(tmp_path / 'w2'),
            cfg_options=options(imagenet_root)))
    (code1, log1), (code2, log2) = runs
    assert code1 != 0 and code2 != 0
    assert ("Unknown sMLPNet arch 'tinyy'; choose one of "
            "['b', 'base', 's', 'small', 't', 'tiny']") in log1, log1[-3000:]
    assert "misses the keys ['depths']" in log2, log2[-3000:]


# 6. Checkpoint whose shapes do not fit the model --------------------------
def build_model(**backbone):
    """The quick-start model with other backbone args."""
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(QUICKSTART).model
    cfg.backbone.update(backbone)
    if 'arch' in backbone:
        cfg.head.in_channels = backbone['arch']['embed_dims'] * 8
    return MODELS.build(cfg)


def save_model(path, **backbone):
    model = build_model(**backbone)
    torch.save({'state_dict': model.state_dict()}, path)
    return model


def test_checkpoint_of_another_width_is_refused(imagenet_root, tmp_path):
    wide = str(tmp_path / 'wide.pth')
    save_model(wide, arch=dict(embed_dims=48, depths=[1, 1, 2, 1],
                               mlp_ratio=3))
    [(code, log)] = run_all(
        tool_command('test.py', QUICKSTART, wide, '--work-dir',
                     str(tmp_path / 'work'),
                     cfg_options=options(imagenet_root)))
    assert code != 0
    assert f'ValueError: {wide} fits the model only in part' in log
    assert '--allow-partial' in log
    for line in ('backbone.downsample_layers.0.weight: checkpoint '
                 '(48, 3, 4, 4) vs model (32, 3, 4, 4)',
                 'backbone.stages.3.0.smlp.fuse.weight: checkpoint '
                 '(384, 1152) vs model (256, 768)',
                 'head.fc.weight: checkpoint (10, 384) vs model (10, 256)'):
        assert line in log, log[-3000:]


def test_checkpoint_of_another_network_is_refused(imagenet_root, tmp_path):
    """No key matches (an unconverted official checkpoint): an error with
    the counts and the converter to run; a partial one only with
    --allow-partial."""
    from mmsmlp.testing import OfficialSMLPNet
    official = str(tmp_path / 'official.pth')
    torch.save({'model': OfficialSMLPNet(dim=32, depths=[1, 1, 2, 1],
                                         num_classes=10).state_dict()},
               official)
    partial = str(tmp_path / 'partial.pth')
    state = build_model().state_dict()
    torch.save({'state_dict': {k: v for k, v in state.items()
                               if not k.startswith('backbone.stages.3')}},
               partial)
    work = str(tmp_path / 'work')
    (code, log), (code_p, log_p), (code_ok, log_ok) = run_all(
        tool_command('test.py', QUICKSTART, official, '--work-dir', work,
                     cfg_options=options(imagenet_root)),
        tool_command('test.py', QUICKSTART, partial, '--work-dir', work + '1',
                     cfg_options=options(imagenet_root)),
        tool_command('test.py', QUICKSTART, partial, '--allow-partial',
                     '--work-dir', work + '2',
                     cfg_options=options(imagenet_root)))
    assert code != 0
    assert re.search(rf'None of the \d+ tensors in {re.escape(official)} '
                     r'matches the \d+ of the model', log), log[-3000:]
    assert 'spach2mmsmlp.py' in log
    assert code_p != 0 and f'{partial} fits the model only in part' in log_p
    assert 'model tensors missing from it' in log_p
    assert code_ok == 0, log_ok[-3000:]
    assert 'accuracy/top1' in log_ok


def test_resampled_or_partial_checkpoints_still_load(tmp_path):
    # A checkpoint trained at 224 loads into a model whose sMLP weights are
    # for 256 (resampled as they load: no error), through load_from's path
    # and init_cfg's; missing keys (a checkpoint of the head only) only warn.
    from mmpretrain.registry import MODELS
    resized = str(tmp_path / 'img224.pth')
    trained = save_model(resized, img_size=224)
    mix = trained.backbone.stages[0][0].smlp.mix_h
    expected, _ = resample_axial_mixing(mix.weight.detach(),
                                        mix.bias.detach(), 64)
    model = build_model(img_size=256)
    load_checkpoint(model, resized)
    assert torch.equal(model.backbone.stages[0][0].smlp.mix_h.weight,
                       expected)
    backbone = MODELS.build(
        dict(type='SMLPNet',
             arch=dict(embed_dims=32, depths=[1, 1, 2, 1], mlp_ratio=3),
             img_size=256,
             init_cfg=dict(type='Pretrained', checkpoint=resized,
                           prefix='backbone.')))
    backbone.init_weights()
    assert torch.equal(backbone.stages[0][0].smlp.mix_h.weight, expected)
    head_only = str(tmp_path / 'head_only.pth')
    torch.save({'state_dict': {
        k: v for k, v in trained.state_dict().items() if k.startswith('head')
    }}, head_only)
    load_checkpoint(model, head_only)  # missing backbone keys: a warning


# 7. NaN / Inf loss --------------------------------------------------------
def test_nan_loss_stops_training_or_is_skipped(imagenet_root, tmp_path):
    config = str(tmp_path / 'nan_at_3.py')
    with open(config, 'w') as f:
        f.write(f'_base_ = [{QUICKSTART!r}]\n'
                "custom_imports = dict(imports=['mmsmlp', "
                "'tests.fault_tolerance_helpers'], "
                'allow_failed_imports=False)\n'
                "model = dict(head=dict(loss=dict(type='NaNAtIterationLoss',"
                ' nan_iterations=[3])))\n')
    stop, skip = str(tmp_path / 'stop'), str(tmp_path / 'skip')
    (code, log), (code_skip, log_skip) = run_all(
        tool_command('train.py', config, '--work-dir', stop,
                     cfg_options=options(imagenet_root, epochs=2)),
        tool_command('train.py', config, '--work-dir', skip,
                     cfg_options=options(imagenet_root, epochs=2) +
                     ['optim_wrapper.type=SkipNonFiniteOptimWrapper']))
    # 2 iterations per epoch: iteration 3 is the first of epoch 2
    assert code != 0
    assert ('FloatingPointError: loss is nan at iteration 3 (epoch 2)'
            in log), log[-3000:]
    assert not osp.exists(osp.join(stop, 'epoch_2.pth'))

    assert code_skip == 0, log_skip[-3000:]
    assert ('loss is nan at iteration 3 (epoch 2): optimizer step skipped '
            '(1 skipped so far)') in log_skip
    assert 'skipped_steps: 1' in log_skip
    weights = state_dict(osp.join(skip, 'epoch_2.pth'))
    assert all(torch.isfinite(v).all() for v in weights.values()
               if v.is_floating_point())

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Bad labels, annotations, configs and runs stop with an error naming the
file, line, key or option (or are dropped with a count), never train or
score silently wrong: issue 18. The bad data is generated here, in the real
formats (ImageNet annotation files, COCO JSON, ADE20K PNG label maps)."""
import copy
import glob
import json
import os
import os.path as osp
import re
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from PIL import Image

from mmsmlp.engine import FiniteLossHook
from mmsmlp.utils import (check_config, check_hook_options, check_schedule,
                          check_top_level_keys, claim_work_dir)
from .conftest import REPO_ROOT
from .test_fault_tolerance import (ENV, QUICKSTART, options, quick_cfg,
                                   run_all, state_dict, tool_command)

CONFIGS = osp.join(REPO_ROOT, 'configs')
MASK_RCNN_1X = osp.join(CONFIGS, 'mask_rcnn',
                        'mask-rcnn_smlpnet-t_fpn_1x_coco.py')
UPERNET_T = osp.join(CONFIGS, 'upernet',
                     'smlpnet-t_upernet_8xb2-160k_ade20k-512x512.py')


# 1. SkipNonFiniteOptimWrapper ---------------------------------------------
def bn_model():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * 6 * 6, 2))


def skip_wrapper(model, **kwargs):
    return build_optim_wrapper(
        model,
        dict(type='SkipNonFiniteOptimWrapper',
             optimizer=dict(type='SGD', lr=0.1), **kwargs))


def test_skip_wrapper_on_the_imagenet_configs():
    """``optim_wrapper.type=SkipNonFiniteOptimWrapper`` alone, as the
    ImageNet base config says, builds (the base's ``dtype='auto'`` is
    kept by the override; the wrapper trains in float32); a mixed-precision
    dtype is refused naming the option."""
    cfg = Config.fromfile(osp.join(CONFIGS, 'smlpnet',
                                   'smlpnet-t_8xb128_in1k.py'))
    cfg.merge_from_dict({'optim_wrapper.type': 'SkipNonFiniteOptimWrapper'})
    init_default_scope('mmpretrain')
    wrapper = build_optim_wrapper(bn_model(), cfg.optim_wrapper)
    assert type(wrapper).__name__ == 'SkipNonFiniteOptimWrapper'
    with pytest.raises(ValueError, match=r"optim_wrapper.dtype must be "
                       r"'auto' or 'float32', got 'bfloat16'"):
        build_optim_wrapper(bn_model(),
                            dict(cfg.optim_wrapper, dtype='bfloat16'))


def train_step(model, wrapper, inputs):
    """What mmengine's ``BaseModel.train_step`` does around the forward."""
    with wrapper.optim_context(model):
        loss = model(inputs).square().mean()
    wrapper.update_params(loss)


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_skipped_step_leaves_no_trace_in_the_model():
    MessageHub.get_instance('test_skipped_step')  # a fresh current hub
    model = bn_model().train()
    wrapper = skip_wrapper(model)
    good = torch.rand(4, 3, 8, 8)
    train_step(model, wrapper, good)
    before = snapshot(model)
    bad = good.clone()
    bad[0, 0, 0, 0] = float('nan')  # NaN loss, and NaN batch statistics
    train_step(model, wrapper, bad)
    assert wrapper.num_skipped == 1
    after = model.state_dict()
    for key, value in before.items():  # weights and BatchNorm statistics
        assert torch.equal(after[key], value), key
    # the next good step trains as if the bad one had never been there
    reference = bn_model().train()
    reference_wrapper = skip_wrapper(reference)
    train_step(reference, reference_wrapper, good)
    train_step(model, wrapper, good)
    train_step(reference, reference_wrapper, good)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)


def test_skipped_step_leaves_no_trace_in_smlpnet():
    """The same through mmengine's train_step on the quick-start sMLPNet
    (its fused BatchNorm + GELU updates the running statistics itself)."""
    from mmpretrain.registry import MODELS
    from mmpretrain.structures import DataSample
    MessageHub.get_instance('test_skipped_step_smlpnet')
    model = MODELS.build(Config.fromfile(QUICKSTART).model).train()
    wrapper = build_optim_wrapper(
        model,
        dict(type='SkipNonFiniteOptimWrapper',
             optimizer=dict(type='AdamW', lr=1e-3)))
    samples = [DataSample().set_gt_label(i) for i in range(2)]
    images = torch.rand(2, 3, 64, 64) * 255
    model.train_step(dict(inputs=images, data_samples=samples), wrapper)
    before = snapshot(model)
    images[1, :, 5, 5] = float('nan')
    log_vars = model.train_step(dict(inputs=images, data_samples=samples),
                                wrapper)
    assert not torch.isfinite(log_vars['loss'])
    assert wrapper.num_skipped == 1
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize('bound,steps,message', [
    (dict(max_skipped_steps=2), 3,
     r'3 optimizer steps skipped .* more than max_skipped_steps=2 allows '
     r'\(2\)'),
    (dict(max_skipped_steps=0.25, max_consecutive_skips=None), 3,
     r'3 optimizer steps skipped .* more than max_skipped_steps=0.25 '
     r"allows \(2 of the run's 8 iterations\)"),
    (dict(max_skipped_steps=None, max_consecutive_skips=2), 3,
     r'3 optimizer steps in a row skipped .*iterations 1 to 3.* more than '
     r'max_consecutive_skips=2'),
])
def test_too_many_skipped_steps_stop_the_run(bound, steps, message):
    hub = MessageHub.get_instance(f'test_skip_bound_{len(message)}')
    model = bn_model().train()
    wrapper = skip_wrapper(model, **bound)
    wrapper.initialize_count_status(model, 0, 8)  # as the training loop
    bad = torch.full((4, 3, 8, 8), float('nan'))
    for i in range(steps - 1):
        hub.update_info('iter', i)  # as the Runner
        train_step(model, wrapper, bad)  # within the bound
    hub.update_info('iter', steps - 1)
    with pytest.raises(FloatingPointError, match=message):
        train_step(model, wrapper, bad)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values()
               if v.is_floating_point())


def test_skip_bounds_are_checked():
    with pytest.raises(ValueError, match='max_skipped_steps must be None, '
                       r'an int >= 0 \(a count\) or a float in \(0, 1\)'):
        skip_wrapper(bn_model(), max_skipped_steps=1.5)
    with pytest.raises(ValueError, match='max_consecutive_skips must be'):
        skip_wrapper(bn_model(), max_consecutive_skips=0)


class _Runner:
    epoch, iter = 3, 30


def test_checkpoint_with_non_finite_values_is_not_saved():
    model = bn_model()
    model[1].running_var[2] = float('nan')
    checkpoint = {'meta': {}, 'state_dict': model.state_dict(),
                  'optimizer': {'state': {0: {'exp_avg': torch.ones(3)}}}}
    FiniteLossHook().before_save_checkpoint(_Runner(), {
        'state_dict': bn_model().state_dict()})  # finite: saved
    with pytest.raises(FloatingPointError,
                       match=r'Not saving the checkpoint of epoch 3 / '
                       r'iteration 30: NaN or infinite values in '
                       r'state_dict.1.running_var\. The run diverged'):
        FiniteLossHook().before_save_checkpoint(_Runner(), checkpoint)
    checkpoint['state_dict'] = bn_model().state_dict()
    checkpoint['optimizer']['state'][0]['exp_avg'][1] = float('inf')
    with pytest.raises(FloatingPointError,
                       match=r'optimizer.state.0.exp_avg'):
        FiniteLossHook().before_save_checkpoint(_Runner(), checkpoint)


def test_diverging_run_stops_and_saves_nothing_non_finite(
        imagenet_root, tmp_path):
    """The issue's case: lr=1e10 with the skipping wrapper. The run stops
    once it skipped more than 5% of its steps (default bound), and every
    checkpoint it saved is finite (BatchNorm statistics included)."""
    work_dir = str(tmp_path / 'diverge')
    (code, log), = run_all(
        tool_command(
            'train.py', QUICKSTART, '--work-dir', work_dir,
            cfg_options=options(imagenet_root, epochs=3) + [
                'optim_wrapper.type=SkipNonFiniteOptimWrapper',
                'optim_wrapper.optimizer.lr=1e10'
            ]))
    assert code != 0, log[-3000:]
    assert re.search(
        r'FloatingPointError: \d+ optimizer steps skipped .* more than '
        r'max_skipped_steps=0.05 allows \(1 of the run\'s 6 iterations\)',
        log), log[-3000:]
    saved = glob.glob(osp.join(work_dir, '*.pth'))
    assert osp.join(work_dir, 'epoch_1.pth') in saved  # before the stop
    for path in saved:
        weights = state_dict(path)
        assert all(torch.isfinite(v).all() for v in weights.values()
                   if v.is_floating_point()), path


# 2. Two runs in one work_dir ----------------------------------------------
HOLD_LOCK = ('import sys, time; from mmsmlp.utils import claim_work_dir\n'
             'with claim_work_dir(sys.argv[1]): print("locked", flush=True)\n'
             'time.sleep(600)')


def test_second_training_run_in_a_work_dir_is_refused(imagenet_root,
                                                      tmp_path):
    work_dir = str(tmp_path / 'one_work_dir')
    holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCK, work_dir],
                              stdout=subprocess.PIPE, text=True, env=ENV,
                              cwd=REPO_ROOT)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        (code, log), = run_all(
            tool_command('train.py', QUICKSTART, '--work-dir', work_dir,
                         cfg_options=options(imagenet_root)))
        assert code != 0
        assert (f'RuntimeError: {work_dir} is in use by another training '
                f'run (pid {holder.pid} on host ') in log, log[-3000:]
        assert not glob.glob(osp.join(work_dir, '2*'))  # no Runner built
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the killed run's lock is released by the system: a new run starts
    (code, log), = run_all(
        tool_command('train.py', QUICKSTART, '--work-dir', work_dir,
                     cfg_options=options(imagenet_root, epochs=2)))
    assert code == 0, log[-3000:]


def _killed_run_with_orphan(work_dir, orphan_s: float):
    """A process that takes the training lock of ``work_dir``, forks a
    child that lives ``orphan_s`` seconds (as a data-loader worker would),
    and is killed with SIGKILL; its pid."""
    code = (
        'import os, signal, sys, time\n'
        'from mmsmlp.utils.work_dir import lock_training\n'
        'lock_training(sys.argv[1])\n'
        'if os.fork() == 0:\n'
        '    open(sys.argv[1] + "/orphan.pid", "w").write(str(os.getpid()))\n'
        '    time.sleep(float(sys.argv[2]))\n'
        '    os._exit(0)\n'
        'os.kill(os.getpid(), signal.SIGKILL)\n')
    from .conftest import REPO_ROOT
    proc = subprocess.Popen([sys.executable, '-c', code, work_dir,
                             str(orphan_s)], cwd=REPO_ROOT)
    assert proc.wait() == -signal.SIGKILL
    return proc.pid


def test_lock_of_a_killed_run_is_not_kept_by_its_forked_workers(tmp_path):
    """A run killed with SIGKILL while a child it forked (a data-loader
    worker) still lives: the child does not hold the run's flock, so a new
    run (``--resume`` right after the kill) takes the lock at once."""
    from mmsmlp.utils import work_dir as work_dir_module
    pid = _killed_run_with_orphan(str(tmp_path), orphan_s=60)
    orphan = ''
    for _ in range(50):  # the orphan writes its pid first thing
        if (tmp_path / 'orphan.pid').is_file():
            orphan = (tmp_path / 'orphan.pid').read_text()
        if orphan:
            break
        time.sleep(0.1)
    try:
        os.kill(int(orphan), 0)  # still alive
        work_dir_module.lock_training(str(tmp_path))
        holder = json.loads((tmp_path / '.train.lock').read_text())
        assert holder['pid'] == os.getpid() != pid
    finally:
        os.kill(int(orphan), signal.SIGKILL)


def test_stale_lock_file_without_flock_is_taken_over(tmp_path, monkeypatch):
    """Where flock is missing, the recorded pid decides: a dead run's lock
    is stale, a live one refuses."""
    from mmsmlp.utils import work_dir as work_dir_module
    monkeypatch.setattr(work_dir_module, 'fcntl', None)
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait()
    path = tmp_path / '.train.lock'
    path.write_text(json.dumps(dict(pid=dead.pid, host=socket.gethostname(),
                                    command='old run')))
    work_dir_module.lock_training(str(tmp_path))  # stale: taken over
    assert json.loads(path.read_text())['pid'] == os.getpid()
    alive = subprocess.Popen([sys.executable, '-c', 'import time; '
                              'time.sleep(60)'])
    try:
        path.write_text(json.dumps(dict(pid=alive.pid,
                                        host=socket.gethostname(),
                                        command='running run')))
        with pytest.raises(RuntimeError,
                           match=f'pid {alive.pid} on host .*running run'):
            work_dir_module.lock_training(str(tmp_path))
    finally:
        alive.kill()
        alive.wait()


def test_runs_started_in_the_same_second_get_their_own_log_folder(
        imagenet_root, tmp_path):
    work_dir = str(tmp_path / 'logs')
    time.sleep(1 - time.time() % 1)  # both Runners within one second
    log_dirs = []
    for name in ('first', 'second'):
        cfg = quick_cfg(imagenet_root, work_dir, 1, f'same_second_{name}')
        with claim_work_dir(work_dir, train=False):
            log_dirs.append(Runner.from_cfg(cfg).log_dir)
    assert log_dirs[0] != log_dirs[1]
    assert all(osp.isdir(d) for d in log_dirs)


# 3. ImageNet-format annotation files --------------------------------------
def imagenet_dataset(root, split, lines=None, config=QUICKSTART):
    """The config's dataset of ``split`` on ``root``, whose annotation file
    is first replaced by ``lines``."""
    if lines is not None:
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.writelines(lines)
    from mmpretrain.registry import DATASETS
    loader = 'train_dataloader' if split == 'train' else 'val_dataloader'
    cfg = copy.deepcopy(Config.fromfile(config)[loader].dataset)
    cfg.update(data_root=root, pipeline=[])
    return DATASETS.build(cfg)


@pytest.fixture
def imagenet_copy(imagenet_root, tmp_path):
    """An annotation-file copy of the generated dataset (images linked)."""
    root = str(tmp_path / 'imagenet')
    os.makedirs(osp.join(root, 'meta'))
    for split in ('train', 'val'):
        os.symlink(osp.join(imagenet_root, split), osp.join(root, split))
        with open(osp.join(imagenet_root, 'meta', f'{split}.txt')) as f:
            lines = f.readlines()
        with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
            f.writelines(lines)
    return root


def read_lines(root, split):
    with open(osp.join(root, 'meta', f'{split}.txt')) as f:
        return f.readlines()


@pytest.mark.parametrize('split,line,bad,message', [
    ('val', 3, 'circle/circle_00002.JPEG 42\n',
     r'line 3: label 42 is out of range'),
    ('train', 5, 'circle/circle_00004.JPEG 15\n',
     r'line 5: label 15 is out of range'),
    ('train', 2, 'circle/circle_00001.JPEG -1\n',
     r'line 2: label -1 is out of range'),
    ('train', 4, 'circle/circle_00003.JPEG 1.0\n',
     r"line 4: label '1.0' is not an integer"),
    ('train', 1, 'circle/circle_00000.JPEG\n',
     r"line 1: no label \('circle/circle_00000.JPEG'\)"),
])
def test_bad_annotation_lines_named(imagenet_copy, split, line, bad,
                                    message):
    lines = read_lines(imagenet_copy, split)
    lines[line - 1] = bad
    ann_file = osp.join(imagenet_copy, 'meta', f'{split}.txt')
    with pytest.raises(ValueError) as error:
        imagenet_dataset(imagenet_copy, split, lines)
    text = str(error.value)
    assert (f'1 bad line(s) in the annotation file {ann_file} (10 classes: '
            'labels 0 to 9)') in text, text
    assert re.search(message, text), text


def test_empty_annotation_file_named(imagenet_copy):
    ann_file = osp.join(imagenet_copy, 'meta', 'train.txt')
    with pytest.raises(ValueError,
                       match=f'The annotation file {re.escape(ann_file)} has '
                       r'no samples \(0 line\(s\)'):
        imagenet_dataset(imagenet_copy, 'train', [])


def test_many_bad_lines_counted(imagenet_copy):
    lines = [f'x/{i}.JPEG {10 + i}\n' for i in range(25)]
    with pytest.raises(ValueError, match=r'25 bad line\(s\)[\s\S]*line 10: '
                       r'label 19[\s\S]*\.\.\. and 15 more'):
        imagenet_dataset(imagenet_copy, 'train', lines)


def test_good_annotation_files_load_as_imagenet(imagenet_root):
    from mmpretrain.datasets import ImageNet
    for split in ('train', 'val'):
        checked = imagenet_dataset(imagenet_root, split)
        assert type(checked).__name__ == 'CheckedImageNet'
        plain = ImageNet(data_root=imagenet_root, split=split,
                         metainfo=checked.metainfo, pipeline=[])
        assert len(checked) == len(plain) == len(read_lines(
            imagenet_root, split))
        for i in range(len(plain)):
            assert checked.get_data_info(i) == plain.get_data_info(i)
    # the ImageNet-1k configs use it too (1000 classes)
    cfg = Config.fromfile(osp.join(CONFIGS, 'smlpnet',
                                   'smlpnet-t_8xb128_in1k.py'))
    for loader in ('train', 'val', 'test'):
        assert cfg[f'{loader}_dataloader'].dataset.type == 'CheckedImageNet'


def test_out_of_range_val_label_stops_the_test_tool(imagenet_copy,
                                                    tmp_path):
    """The issue's case: tools/test.py scored top-1 0.0 with exit 0."""
    lines = read_lines(imagenet_copy, 'val')
    lines[6] = lines[6].rsplit(' ', 1)[0] + ' 42\n'
    with open(osp.join(imagenet_copy, 'meta', 'val.txt'), 'w') as f:
        f.writelines(lines)
    from mmpretrain.registry import MODELS
    model = MODELS.build(Config.fromfile(QUICKSTART).model)
    checkpoint = str(tmp_path / 'model.pth')
    torch.save({'state_dict': model.state_dict()}, checkpoint)
    (code, log), = run_all(
        tool_command('test.py', QUICKSTART, checkpoint, '--work-dir',
                     str(tmp_path / 'test'),
                     cfg_options=options(imagenet_copy)))
    assert code != 0
    assert re.search(r'ValueError: 1 bad line\(s\) in the annotation file '
                     r'\S+/meta/val.txt \(10 classes: labels 0 to 9\):\s+'
                     r'line 7: label 42 is out of range', log), log[-3000:]


# 4. COCO ------------------------------------------------------------------
@pytest.fixture(scope='module')
def coco_root(tmp_path_factory):
    from mmsmlp.datasets.synthetic_coco import make_coco
    root = str(tmp_path_factory.mktemp('coco'))
    make_coco(root, num_train=6, num_val=2, size=(96, 64), seed=0)
    return root


def coco_dataset(root, edit=None, split='train', tmp_path=None):
    """The Mask R-CNN config's dataset of ``split`` on ``root``, its
    annotation file first edited by ``edit(json)`` (into a copy)."""
    init_default_scope('mmdet')
    from mmdet.registry import DATASETS
    loader = 'train_dataloader' if split == 'train' else 'val_dataloader'
    cfg = copy.deepcopy(Config.fromfile(MASK_RCNN_1X)[loader].dataset)
    ann_file = osp.join(root, cfg.ann_file)
    if edit is not None:
        with open(ann_file) as f:
            data = json.load(f)
        edit(data)
        ann_file = str(tmp_path / 'edited.json')
        with open(ann_file, 'w') as f:
            json.dump(data, f)
    cfg.update(data_root=root, ann_file=ann_file)
    return DATASETS.build(cfg)


def annotations_in(dataset):
    return sum(
        len(dataset.get_data_info(i)['instances'])
        for i in range(len(dataset)))


@pytest.fixture
def warnings_of(caplog):
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    logger.addHandler(caplog.handler)
    yield lambda: [r.getMessage() for r in caplog.records
                   if r.levelname == 'WARNING']
    logger.removeHandler(caplog.handler)


def test_coco_drops_are_counted(coco_root, tmp_path, warnings_of):
    good = coco_dataset(coco_root)
    total = annotations_in(good)
    assert type(good).__name__ == 'CheckedCocoDataset' and total >= 8
    assert not [w for w in warnings_of() if 'dropped' in w]

    def edit(data):
        anns = data['annotations']
        anns[0]['bbox'][2] = -anns[0]['bbox'][2]  # negative width
        anns[1]['bbox'][1] = float('nan')  # NaN box (Python's json)
        anns[2]['bbox'][3] = None  # NaN as JavaScript writes it
        anns[3]['category_id'] = 999  # not in `categories`
        anns[4]['category_id'] = 998

    dataset = coco_dataset(coco_root, edit, tmp_path=tmp_path)
    assert annotations_in(dataset) == total - 5
    ann_file = str(tmp_path / 'edited.json')
    assert (f'{ann_file}: dropped 5 of {total} annotations: 2 with a NaN or '
            'infinite box, 2 with an unknown category id, 1 with a zero or '
            'negative box width or height (unknown category ids: [998, '
            '999])') in warnings_of()


def test_coco_with_nothing_usable_is_refused(coco_root, tmp_path):

    def negative_widths(data):
        for ann in data['annotations']:
            ann['bbox'][2] = -5

    with pytest.raises(ValueError,
                       match=r'No usable annotation in \S+edited.json: all '
                       r'\d+ annotations were dropped'):
        coco_dataset(coco_root, negative_widths, tmp_path=tmp_path)


def test_coco_missing_field_named(coco_root, tmp_path):

    def no_segmentation(data):
        del data['annotations'][2]['segmentation']

    ann_id = json.load(open(osp.join(
        coco_root, 'annotations', 'instances_train2017.json')))[
            'annotations'][2]['id']
    with pytest.raises(ValueError,
                       match=rf'edited.json: annotation {ann_id} \(image '
                       r'\S+\.jpg\) has no segmentation field \(required: '
                       r'bbox, category_id, area, segmentation\)'):
        coco_dataset(coco_root, no_segmentation, tmp_path=tmp_path)

    def no_category(data):
        del data['annotations'][0]['category_id']

    with pytest.raises(ValueError,
                       match=r"edited.json: an image, annotation or category "
                       r"has no 'category_id' field"):
        coco_dataset(coco_root, no_category, tmp_path=tmp_path)


def test_coco_configs_use_the_checked_dataset():
    for name in sorted(glob.glob(osp.join(CONFIGS, 'mask_rcnn', '*.py'))):
        cfg = Config.fromfile(name)
        for loader in ('train', 'val', 'test'):
            dataset = cfg[f'{loader}_dataloader'].dataset
            while 'dataset' in dataset:  # RepeatDataset and the like
                dataset = dataset.dataset
            assert dataset.type == 'CheckedCocoDataset', (name, loader)


# 5. ADE20K ----------------------------------------------------------------
@pytest.fixture
def ade_root(tmp_path):
    from mmsmlp.datasets.synthetic_ade20k import make_ade20k
    root = str(tmp_path / 'ade')
    make_ade20k(root, num_train=2, num_val=1, size=(48, 64))
    return root


def ade_sample(root, split='train'):
    init_default_scope('mmseg')
    from mmseg.registry import DATASETS
    loader = 'train_dataloader' if split == 'train' else 'val_dataloader'
    cfg = copy.deepcopy(Config.fromfile(UPERNET_T)[loader].dataset)
    cfg.data_root = root
    return DATASETS.build(cfg)[0]


def label_path(root, split='training'):
    return sorted(glob.glob(osp.join(root, 'annotations', split,
                                     '*.png')))[0]


def test_ade20k_good_label_maps_load(ade_root):
    for split in ('train', 'val'):
        ade_sample(ade_root, split)


@pytest.mark.parametrize('split', ['train', 'val'])
def test_ade20k_label_values_out_of_range_named(ade_root, split):
    path = label_path(ade_root, 'training' if split == 'train' else
                      'validation')
    label = np.array(Image.open(path))
    label[:3, :4] = 200  # 199 after reduce_zero_label
    label[5, 5] = 255  # ignored (254 -> 255), not an error
    Image.fromarray(label).save(path)
    with pytest.raises(ValueError,
                       match=rf'Label map {re.escape(path)}: 12 pixel\(s\) '
                       r'with labels 199 \(after reduce_zero_label: file '
                       r'values minus 1\), out of range for 150 classes '
                       r'\(labels 0 to 149, and 255 for ignored pixels\)'):
        ade_sample(ade_root, split)


def test_ade20k_rgb_label_map_named(ade_root):
    path = label_path(ade_root)
    label = np.array(Image.open(path))
    Image.fromarray(np.stack([label] * 3, -1)).save(path)
    with pytest.raises(ValueError,
                       match=rf'Label map {re.escape(path)}: shape '
                       r'\(48, 64, 3\); a label map holds one class index '
                       'per pixel'):
        ade_sample(ade_root)


def test_ade20k_label_map_of_another_size_named(ade_root):
    path = label_path(ade_root)
    Image.open(path).resize((32, 24), Image.NEAREST).save(path)
    with pytest.raises(ValueError,
                       match=rf'Label map {re.escape(path)}: 32x24 \(width x '
                       r'height\), its image \S+\.jpg is 64x48'):
        ade_sample(ade_root)


# 6. Configs ---------------------------------------------------------------
def quick_config():
    return Config.fromfile(QUICKSTART)


def test_top_level_key_typo_reported():
    cfg = quick_config()
    cfg.trian_cfg = dict(max_epochs=1)
    with pytest.raises(KeyError,
                       match=r"Unknown top-level config key\(s\) 'trian_cfg'"
                       r" \(did you mean 'train_cfg'\?\)"):
        check_top_level_keys(cfg)


def test_hook_option_typo_reported():
    cfg = quick_config()
    cfg.default_hooks.checkpoint.intervall = 1
    cfg.custom_hooks[0].seeed = 3
    with pytest.raises(TypeError) as error:
        check_hook_options(cfg)
    text = str(error.value)
    assert ("default_hooks.checkpoint: SafeCheckpointHook has no option "
            "'intervall' (did you mean 'interval'?); its options: ") in text
    assert "custom_hooks[0]: EpochSeedHook has no option 'seeed'" in text
    # EMAHook's options include those of its EMA model
    cfg = quick_config()
    cfg.custom_hooks.append(
        dict(type='EMAHook', momentum=1e-4, update_buffers=True))
    check_hook_options(cfg)
    cfg.custom_hooks[-1]['momentun'] = 1e-4
    with pytest.raises(TypeError, match="EMAHook has no option 'momentun' "
                       r"\(did you mean 'momentum'\?\)"):
        check_hook_options(cfg)


def test_max_epochs_equal_to_warmup_reported():
    cfg = quick_config()  # warm-up: 1 epoch, then cosine
    cfg.train_cfg.max_epochs = 1
    with pytest.raises(ValueError,
                       match=r'param_scheduler\[1\] \(CosineAnnealingLR\) '
                       r'begins at epoch 1 \(param_scheduler\[0\] \(LinearLR'
                       r'\) ends at 1\) and runs to the end of training, but '
                       r'train_cfg.max_epochs=1 ends training there: '
                       'max_epochs must be larger than 1'):
        check_schedule(cfg)
    cfg.train_cfg.max_epochs = 2
    check_schedule(cfg)


def test_ignored_find_unused_parameters_reported():
    """mmengine ignores the top-level option when the config has a
    model_wrapper_cfg, as the ImageNet configs do (FlatReduceDDP)."""
    cfg = Config.fromfile(osp.join(CONFIGS, 'smlpnet',
                                   'smlpnet-t_8xb128_in1k.py'))
    cfg.find_unused_parameters = True
    with pytest.raises(ValueError,
                       match=r"find_unused_parameters=True would be ignored"
                       r".*model_wrapper_cfg=\{'type': 'FlatReduceDDP'\}; "
                       r"set model_wrapper_cfg.find_unused_parameters=True"):
        check_config(cfg)
    cfg.model_wrapper_cfg.find_unused_parameters = True
    check_config(cfg)
    cfg = quick_config()  # no model_wrapper_cfg: mmengine passes it on
    cfg.find_unused_parameters = True
    check_config(cfg)


def test_every_config_passes_the_checks():
    for path in sorted(glob.glob(osp.join(CONFIGS, '*', '*.py'))):
        if '_base_' in path:
            continue
        cfg = Config.fromfile(path)
        check_config(cfg)
        check_schedule(cfg)


def test_config_errors_stop_train_tool_before_training(imagenet_root,
                                                       tmp_path):
    (code, log), (code_warmup, log_warmup) = run_all(
        tool_command('train.py', QUICKSTART, '--work-dir',
                     str(tmp_path / 'typo'),
                     cfg_options=options(imagenet_root, epochs=2) +
                     ['trian_cfg.max_epochs=3']),
        tool_command('train.py', QUICKSTART, '--work-dir',
                     str(tmp_path / 'warmup'),
                     cfg_options=options(imagenet_root, epochs=1)))
    assert code != 0
    assert "'trian_cfg' (did you mean 'train_cfg'?)" in log, log[-3000:]
    assert code_warmup != 0
    assert ('ValueError: param_scheduler[1] (CosineAnnealingLR) begins at '
            'epoch 1') in log_warmup, log_warmup[-3000:]
    for text in (log, log_warmup):
        assert 'Epoch(train)' not in text

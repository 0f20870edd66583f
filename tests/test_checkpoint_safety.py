# Copyright (c) mmsmlp contributors. All rights reserved.
"""A checkpoint is a pickle: loading one must never run code unless the
user says the file is trusted. Every loading path of the project's tools
and configs is tried with a checkpoint that would create a file."""
import argparse
import os
import os.path as osp
import subprocess
import sys
import warnings

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

from .conftest import REPO_ROOT

QUICKSTART = osp.join(REPO_ROOT, 'configs', 'quickstart',
                      'smlpnet-mini_1xb32_synthetic-in1k-format.py')
TOOLS = osp.join(REPO_ROOT, 'tools')


class _RunsCode:
    """Unpickling this calls ``open(marker, 'w')``: a stand-in for
    ``os.system``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.fixture
def evil(tmp_path):
    """(checkpoint, marker): the checkpoint creates the marker file when
    unpickled with full pickle."""
    marker = str(tmp_path / 'pwned')
    path = str(tmp_path / 'evil.pth')
    model = build_quickstart_model()
    torch.save({'state_dict': model.state_dict(),
                'meta': {'x': _RunsCode(marker)}}, path)
    return path, marker


def build_quickstart_model():
    from mmpretrain.registry import MODELS
    init_default_scope('mmpretrain')
    return MODELS.build(Config.fromfile(QUICKSTART).model)


def data_options(data_root):
    opts = ['train_cfg.max_epochs=2']  # 1 is the warm-up's length
    for split in ('train', 'val', 'test'):
        opts += [
            f'{split}_dataloader.dataset.data_root={data_root}',
            f'{split}_dataloader.num_workers=0',
            f'{split}_dataloader.persistent_workers=False'
        ]
    return opts


def run(*args):
    result = subprocess.run([sys.executable, *args], capture_output=True,
                            text=True, cwd=REPO_ROOT)
    return result.returncode, result.stdout + result.stderr


def test_malicious_checkpoint_runs_nothing_anywhere(evil, imagenet_root,
                                                    tmp_path):
    path, marker = evil
    opts = data_options(imagenet_root)
    attempts = {
        'tools/test.py': [
            osp.join(TOOLS, 'test.py'), QUICKSTART, path, '--work-dir',
            str(tmp_path / 'test'), '--cfg-options', *opts
        ],
        'load_from': [
            osp.join(TOOLS, 'train.py'), QUICKSTART, '--work-dir',
            str(tmp_path / 'load_from'), '--cfg-options', *opts,
            f'load_from={path}'
        ],
        '--resume': [
            osp.join(TOOLS, 'train.py'), QUICKSTART, '--work-dir',
            str(tmp_path / 'resume'), '--resume', path, '--cfg-options', *opts
        ],
        'converter': [
            osp.join(TOOLS, 'model_converters', 'spach2mmsmlp.py'), path,
            str(tmp_path / 'converted.pth')
        ],
        'init_cfg Pretrained': [
            '-c', 'import mmsmlp; from mmpretrain.registry import MODELS; '
            'MODELS.build(dict(type="SMLPNet", arch="tiny", init_cfg=dict('
            f'type="Pretrained", checkpoint={path!r}, prefix="backbone.")))'
            '.init_weights()'
        ],
        'image_demo.py': [
            osp.join(TOOLS, 'demo', 'image_demo.py'),
            osp.join(imagenet_root, 'val', 'circle', 'circle_00000.JPEG'),
            QUICKSTART, path, '--device', 'cpu'
        ],
    }
    for name, args in attempts.items():
        code, log = run(*args)
        assert code != 0, f'{name} loaded the file:\n{log[-2000:]}'
        assert not osp.exists(marker), f'{name} ran the pickle\'s code'
        assert 'weights' in log.lower() or 'unpickl' in log.lower(), (
            name, log[-2000:])
    # the tools name the file and the opt-in
    code, log = run(*attempts['tools/test.py'])
    assert path in log and '--trust-checkpoint' in log


def test_trusted_opt_in_loads_other_types_with_a_warning(
        imagenet_root, tmp_path):
    """A harmless checkpoint with a type outside the allow-list: refused by
    default, loaded with --trust-checkpoint (and a warning)."""
    path = str(tmp_path / 'namespace.pth')
    model = build_quickstart_model()
    torch.save({'state_dict': model.state_dict(),
                'meta': {'args': argparse.Namespace(a=1)}}, path)
    base = [
        osp.join(TOOLS, 'test.py'), QUICKSTART, path, '--work-dir',
        str(tmp_path / 'test')
    ]
    opts = ['--cfg-options', *data_options(imagenet_root)]
    code, log = run(*base, *opts)
    assert code != 0 and '--trust-checkpoint' in log
    code, log = run(*base, '--trust-checkpoint', *opts)
    assert code == 0, log[-3000:]
    assert 'can run arbitrary code' in log and 'accuracy/top1' in log
    # the opt-in ends with the block
    from mmsmlp.compat import trust_checkpoints
    with pytest.warns(UserWarning, match='arbitrary code'):
        with trust_checkpoints('test'):
            assert torch.load(path)['meta']['args'].a == 1
    with pytest.raises(Exception, match='Namespace'):
        torch.load(path)


def test_another_head_size_warns_through_plain_mmengine(tmp_path):
    """Fine-tuning with another class count: mmengine's loaders warn and
    skip the head, whether mmsmlp is imported or not."""
    from mmengine.runner import load_checkpoint
    model = build_quickstart_model()
    path = str(tmp_path / 'other_head.pth')
    state = model.state_dict()
    state['head.fc.weight'] = torch.zeros(5, state['head.fc.weight'].shape[1])
    state['head.fc.bias'] = torch.zeros(5)
    torch.save({'state_dict': state}, path)
    with warnings.catch_warnings(record=True):
        load_checkpoint(model, path)  # no error
    assert model.head.fc.weight.shape[0] == 10
    torch.testing.assert_close(model.backbone.norm3.weight,
                               state['backbone.norm3.weight'])


def test_not_a_checkpoint_is_named(imagenet_root, tmp_path):
    """Empty, truncated and text files: an error naming the file."""
    model = build_quickstart_model()
    good = str(tmp_path / 'good.pth')
    torch.save({'state_dict': model.state_dict()}, good)
    with open(good, 'rb') as f:
        data = f.read()
    files = {'empty.pth': b'', 'truncated.pth': data[:len(data) // 2],
             'text.pth': b'not a checkpoint\n'}
    for name, content in files.items():
        bad = str(tmp_path / name)
        with open(bad, 'wb') as f:
            f.write(content)
        for args in ([osp.join(TOOLS, 'test.py'), QUICKSTART, bad],
                     [osp.join(TOOLS, 'train.py'), QUICKSTART, '--work-dir',
                      str(tmp_path / 'w'), '--resume', bad],
                     [osp.join(TOOLS, 'model_converters', 'spach2mmsmlp.py'),
                      bad, str(tmp_path / 'out.pth')]):
            code, log = run(*args, *(['--cfg-options',
                                      *data_options(imagenet_root)]
                                     if 'tools/t' in args[0] else []))
            assert code != 0
            assert f'{bad} is not a checkpoint (truncated?)' in log, (
                args[0], log[-2000:])


def test_resume_without_checkpoint_warns(imagenet_root, tmp_path):
    code, log = run(
        osp.join(TOOLS, 'train.py'), QUICKSTART, '--work-dir',
        str(tmp_path / 'empty'), '--resume', '--cfg-options',
        *data_options(imagenet_root))
    assert code == 0, log[-3000:]
    assert 'no checkpoint in' in log and 'training from scratch' in log
    assert os.path.isfile(str(tmp_path / 'empty' / 'epoch_2.pth'))

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Each known trap of the pinned stack, that mmsmlp gets past it, and that
importing mmsmlp changes nothing else in other libraries."""
import collections
import os
import os.path as osp
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch

from .conftest import REPO_ROOT, import_tool


def python(code, env=None):
    """Run ``code`` in a fresh interpreter; (returncode, stdout, stderr)."""
    result = subprocess.run([sys.executable, '-c', code],
                            capture_output=True, text=True, cwd=REPO_ROOT,
                            env={**os.environ, **(env or {})})
    return result.returncode, result.stdout, result.stderr


def test_mmcv_compiled_ops_run():
    # mmcv 2.1.0 built from source (C++20 with torch >= 2.14) with its ops
    from mmcv.ops import nms, roi_align
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.],
                          [50., 50., 60., 60.]])
    _, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    feats = torch.arange(16.).view(1, 1, 4, 4)
    out = roi_align(feats, torch.tensor([[0., 0., 0., 2., 2.]]), (1, 1), 1.0,
                    0, 'avg', True)
    assert out.shape == (1, 1, 1, 1)


def test_installed_versions_are_the_tested_ones():
    # tools/install.sh installs requirements/tested.txt
    import mmdet
    import mmengine
    import mmpretrain
    import mmseg
    with open(osp.join(REPO_ROOT, 'requirements', 'tested.txt')) as f:
        pins = dict(
            line.strip().split('==') for line in f
            if '==' in line and not line.startswith('#'))
    installed = {
        'mmcv': mmcv.__version__, 'mmengine': mmengine.__version__,
        'mmpretrain': mmpretrain.__version__, 'mmdet': mmdet.__version__,
        'mmsegmentation': mmseg.__version__
    }
    assert installed == pins


# What used to be patched at import time, by name: each must be the upstream
# object after `import mmsmlp` exactly as before it.
UPSTREAM_OBJECTS = """
import mmcv, numpy as np
import mmpretrain.datasets
from mmengine.fileio.backends import LocalBackend
from mmengine.registry import HOOKS
from mmengine.runner import Runner, checkpoint
def snapshot():
    return dict(
        checkpoint_hook=HOOKS.get('CheckpointHook'),
        maybe_compile=Runner._maybe_compile,
        put=LocalBackend.put, put_text=LocalBackend.put_text,
        adjust_hue=mmcv.adjust_hue,
        remove_transform=mmpretrain.datasets.remove_transform,
        load_state_dict=checkpoint.load_state_dict,
        local_loader=checkpoint.CheckpointLoader._schemes[''],
        in1d=getattr(np, 'in1d', None))
before = snapshot()
import mmsmlp
after = snapshot()
changed = [k for k in before if before[k] is not after[k]]
print('changed:', changed)
print(after['checkpoint_hook'].__module__, after['local_loader'].__name__)
"""


def test_import_changes_no_upstream_object():
    code, out, err = python(UPSTREAM_OBJECTS)
    assert code == 0, err[-3000:]
    assert 'changed: []' in out
    assert 'mmengine.hooks.checkpoint_hook load_from_local' in out


def test_upstream_first_imports_and_tools(tmp_path):
    """Upstream inferencers and models imported before mmsmlp (in the
    README's environment), then mmsmlp: everything imports and SMLPNet is in
    all three registries."""
    code, out, err = python(
        'from mmseg.apis import MMSegInferencer\n'
        'from mmdet.apis import DetInferencer\n'
        'from mmpretrain.apis import ImageClassificationInferencer\n'
        'import mmpretrain.models, mmdet.models, mmseg.models\n'
        'import mmsmlp\n'
        'from mmpretrain.registry import MODELS as P\n'
        'from mmdet.registry import MODELS as D\n'
        'from mmseg.registry import MODELS as S\n'
        'print([r.get("SMLPNet").__name__ for r in (P, D, S)])')
    assert code == 0, err[-3000:]
    assert "['SMLPNet', 'SMLPNet', 'SMLPNet']" in out
    # mmseg's own print_config tool on one of our configs
    import mmseg
    tool = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', 'misc',
                    'print_config.py')
    config = osp.join(REPO_ROOT, 'configs', 'upernet',
                      'smlpnet-t_upernet_8xb2-160k_ade20k-512x512.py')
    if osp.isfile(tool):  # shipped in mmseg's wheel
        result = subprocess.run([sys.executable, tool, config],
                                capture_output=True, text=True,
                                cwd=str(tmp_path))
        assert result.returncode == 0, result.stderr[-3000:]
        assert "type='SMLPNet'" in result.stdout


# A transformers 4.56 stand-in that breaks mmpretrain 1.2.0's BLIP import the
# way the real 4.56+ does (the helpers it imports are gone); the README's
# install does not install transformers at all.
FAKE_NEW_TRANSFORMERS = {
    'PYTHONPATH': os.pathsep.join(
        [osp.join(REPO_ROOT, 'tests', 'data', 'fake_transformers_4_56'),
         REPO_ROOT])
}


def test_mmpretrain_models_import_with_new_transformers():
    env = FAKE_NEW_TRANSFORMERS
    # The breakage: mmpretrain's models alone do not import.
    code, _, err = python('import mmpretrain.models', env)
    assert code != 0 and 'NoneType takes no arguments' in err, err[-2000:]
    # `import mmsmlp` first (as configs do): they do, with placeholders for
    # the multimodal models.
    code, out, err = python(
        'import mmsmlp, mmpretrain.models\n'
        'from mmpretrain.registry import MODELS\n'
        'print(MODELS.get("SMLPNet").__name__, '
        'MODELS.get("ConvNeXt").__name__)', env)
    assert code == 0, err[-2000:]
    assert out.split() == ['SMLPNet', 'ConvNeXt']


def message_hub_state():
    """What mmengine's Runner saves beside tensors: its message hub's
    HistoryBuffers (numpy arrays, methods pickled through getattr), numpy
    scalars and arrays."""
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(np.float64(0.5))
    buffer.update(1.5, count=2)
    return {
        'log_scalars': collections.OrderedDict(train_loss=buffer),
        'runtime_info': collections.OrderedDict(
            eta=np.float64(3.5), ids=[1, 2], state=np.arange(3)),
    }


def test_plain_data_round_trip_loads_weights_only(tmp_path):
    """What SafeCheckpointHook writes: a plain `torch.load` (weights-only,
    no allow-list, no mmsmlp) reads it; mmengine's objects come back."""
    from mmsmlp.compat import from_plain_data, to_plain_data
    raw, plain = str(tmp_path / 'raw.pth'), str(tmp_path / 'plain.pth')
    torch.save({'message_hub': message_hub_state()}, raw)
    torch.save({'message_hub': to_plain_data(message_hub_state())}, plain)
    # mmengine's own objects: refused weights-only (torch >= 2.6)
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(raw)
    assert 'builtins.getattr' in unsafe
    assert torch.serialization.get_unsafe_globals_in_checkpoint(plain) == []
    code, out, err = python(
        f'import torch; ck = torch.load({plain!r}); '
        "print(sorted(ck['message_hub']['log_scalars']))")
    assert code == 0, err[-2000:]
    assert out.strip() == "['train_loss']"
    back = from_plain_data(torch.load(plain))['message_hub']
    buffer = back['log_scalars']['train_loss']
    expected = message_hub_state()['log_scalars']['train_loss']
    for got, want in zip(buffer.data, expected.data):
        np.testing.assert_array_equal(got, want)
    assert buffer.mean() == expected.mean()
    assert back['runtime_info']['eta'] == 3.5
    assert back['runtime_info']['ids'] == [1, 2]
    np.testing.assert_array_equal(back['runtime_info']['state'], np.arange(3))


class _OnDevice(torch.Tensor):
    """A tensor as mmengine's resume loads it onto a GPU: numpy() refuses
    it, cpu() gives a host tensor (for a CPU-only machine)."""

    def numpy(self, *args, **kwargs):
        raise TypeError("can't convert cuda:0 device type tensor to numpy")

    def cpu(self, *args, **kwargs):
        return self.as_subclass(torch.Tensor).clone()


def test_plain_data_loaded_onto_a_gpu_comes_back():
    """`--resume` on a GPU: mmengine loads the checkpoint onto the training
    device, the message hub's plain tensors included."""
    from mmsmlp.compat import from_plain_data, to_plain_data

    def to_device(obj):
        if isinstance(obj, torch.Tensor):
            return (obj.cuda() if torch.cuda.is_available() else
                    obj.as_subclass(_OnDevice))
        if isinstance(obj, dict):
            return type(obj)((k, to_device(v)) for k, v in obj.items())
        if isinstance(obj, (list, tuple)):
            return type(obj)(to_device(v) for v in obj)
        return obj

    back = from_plain_data(to_device(to_plain_data(message_hub_state())))
    buffer = back['log_scalars']['train_loss']
    expected = message_hub_state()['log_scalars']['train_loss']
    for got, want in zip(buffer.data, expected.data):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(back['runtime_info']['state'], np.arange(3))


def test_second_install_does_not_rebuild_mmcv():
    result = subprocess.run(
        ['bash', osp.join(REPO_ROOT, 'tools', 'install.sh')],
        capture_output=True, text=True,
        env={**os.environ, 'PYTHON': sys.executable})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[
        -2000:]
    assert 'mmcv 2.1.0 with compiled ops already installed: not rebuilding' \
        in result.stdout
    assert 'building mmcv' not in result.stdout


@pytest.mark.parametrize('value', [None, 'reduce-overhead'])
def test_compile_flag_adds_the_hook(value):
    """`tools/train.py --compile [MODE]` appends CompileForwardHook with the
    mode to the config's hooks; without it nothing is compiled."""
    from mmengine.config import Config
    train_tool = import_tool('train.py')
    config = osp.join(REPO_ROOT, 'configs', 'smlpnet',
                      'smlpnet-t_8xb128_in1k.py')
    argv = [config] + ([] if value is None else ['--compile', value])
    sys_argv, sys.argv = sys.argv, ['train.py'] + argv
    try:
        args = train_tool.parse_args()
    finally:
        sys.argv = sys_argv
    cfg = train_tool.merge_args(Config.fromfile(config), args)
    hooks = [h for h in cfg.custom_hooks if h.type == 'CompileForwardHook']
    if value is None:
        assert hooks == []
    else:
        assert hooks == [dict(type='CompileForwardHook', mode=value)]

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Each known trap of the pinned stack, and that mmsmlp gets past it."""
import importlib.metadata
import os.path as osp
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch
from mmengine.utils import digit_version

from .conftest import REPO_ROOT


def test_mmcv_compiled_ops_run():
    # mmcv 2.1.0 built from source (C++20 with torch >= 2.14) with its ops
    from mmcv.ops import nms, roi_align
    assert mmcv.__version__ == '2.1.0'
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.],
                          [50., 50., 60., 60.]])
    _, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    feats = torch.arange(16.).view(1, 1, 4, 4)
    out = roi_align(feats, torch.tensor([[0., 0., 0., 2., 2.]]), (1, 1), 1.0,
                    0, 'avg', True)
    assert out.shape == (1, 1, 1, 1)


def test_codebases_accept_pinned_mmcv():
    # mmdet 3.3.0 and mmseg 1.2.2 assert mmcv < 2.2 on import
    import mmdet
    import mmpretrain
    import mmseg
    assert (mmdet.__version__, mmseg.__version__,
            mmpretrain.__version__) == ('3.3.0', '1.2.2', '1.2.0')


def test_mmpretrain_models_import_with_new_transformers():
    transformers_version = importlib.metadata.version('transformers')
    assert digit_version(transformers_version) >= digit_version('4.56.0'), (
        'the test requirements install transformers >= 4.56 to check this')
    # A fresh interpreter: `import mmsmlp` first, then mmpretrain's models.
    code = ('import mmsmlp, mmpretrain.models; '
            'from mmpretrain.registry import MODELS; '
            'print(MODELS.get("SMLPNet").__name__, '
            'MODELS.get("ConvNeXt").__name__)')
    result = subprocess.run([sys.executable, '-c', code],
                            capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ['SMLPNet', 'ConvNeXt']


def test_runner_checkpoint_loads_on_new_torch(tmp_path):
    # What the Runner saves holds more than tensors: torch >= 2.6 refuses it
    # by default; mmengine's loader (patched) must read it back.
    from mmengine.runner.checkpoint import _load_checkpoint
    path = str(tmp_path / 'ckpt.pth')
    torch.save({'meta': {'np': np.float64(1.5)}, 'state_dict': {}}, path)
    if digit_version(torch.__version__) >= digit_version('2.6.0'):
        with pytest.raises(Exception):
            torch.load(path)
    assert _load_checkpoint(path)['meta']['np'] == 1.5
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        _load_checkpoint(str(tmp_path / 'missing.pth'))


def test_in1d_and_retrieval_metric():
    from mmpretrain.evaluation import RetrievalRecall
    assert np.in1d([1, 2, 3], [2]).tolist() == [False, True, False]
    assert np.in1d([[1, 2], [3, 4]], [4]).tolist() == [False] * 3 + [True]
    recall = RetrievalRecall.calculate(
        torch.tensor([[0.9, 0.1, 0.0], [0.1, 0.2, 0.7]]),
        [torch.tensor([0]), torch.tensor([1])],
        topk=(1, 2),
        target_indices=True)
    assert [float(r) for r in recall] == [50.0, 100.0]


@pytest.mark.parametrize('backend', ['cv2', 'pillow'])
def test_adjust_hue_negative_factor(backend):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = mmcv.adjust_hue(img, -0.2, backend=backend)
    assert out.shape == img.shape and out.dtype == np.uint8
    # a hue shift is cyclic: -0.2 then +0.2 comes back close to the input
    back = mmcv.adjust_hue(out, 0.2, backend=backend)
    assert np.abs(back.astype(int) - img).mean() < 12
    assert np.abs(out.astype(int) - img).mean() > 12
    # mmpretrain's ColorJitter draws negative hue factors half of the time
    from mmpretrain.datasets.transforms import ColorJitter
    jitter = ColorJitter(hue=0.4, backend=backend)
    for _ in range(8):
        assert jitter({'img': img.copy()})['img'].shape == img.shape


def test_second_install_does_not_rebuild_mmcv():
    result = subprocess.run(
        ['bash', osp.join(REPO_ROOT, 'tools', 'install.sh')],
        capture_output=True, text=True,
        env={**__import__('os').environ, 'PYTHON': sys.executable})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[
        -2000:]
    assert 'mmcv 2.1.0 with compiled ops already installed: not rebuilding' \
        in result.stdout
    assert 'building mmcv' not in result.stdout


def test_compile_switch_values():
    """`compile` unset or False leaves the model alone, True or a dict
    compiles its forward once (a second train() does not wrap it again),
    anything else is an error that names the key."""
    import logging
    from types import SimpleNamespace

    from mmengine.runner import Runner

    import mmsmlp  # noqa: F401  (applies the replacement)

    def runner(compile_cfg):
        cfg = {} if compile_cfg == 'unset' else dict(compile=compile_cfg)
        return SimpleNamespace(cfg=cfg, model=torch.nn.Linear(2, 2),
                               logger=logging.getLogger('test'))

    for value in ('unset', None, False):
        r = runner(value)
        Runner._maybe_compile(r, 'train_step')
        assert 'forward' not in vars(r.model)
    r = runner(dict(backend='eager'))
    Runner._maybe_compile(r, 'train_step')
    assert 'forward' in vars(r.model)  # the compiled one, on the instance
    compiled = r.model.forward
    Runner._maybe_compile(r, 'train_step')
    assert r.model.forward is compiled
    x = torch.randn(3, 2)
    torch.testing.assert_close(compiled(x), torch.nn.Linear.forward(r.model, x))
    with pytest.raises(TypeError, match='`compile`'):
        Runner._maybe_compile(runner('yes'), 'train_step')

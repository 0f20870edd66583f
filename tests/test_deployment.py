# Copyright (c) mmsmlp contributors. All rights reserved.
"""Export with dynamic height and width (ONNX through both exporters, and
torch.export), checked against PyTorch at sizes the export was not traced
at: other sizes than the sMLP weights' (resampled inside the graph), sizes
that need padding, non-square ones; and tools/deployment/pytorch2onnx.py."""
import importlib.util
import os.path as osp

import onnx
import pytest
import torch
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS

from mmsmlp.models.utils.fast_paths import is_eager, is_exporting
from .conftest import REPO_ROOT, run_tool


SCRIPT = osp.join(REPO_ROOT, 'tools', 'deployment', 'pytorch2onnx.py')
QUICKSTART = osp.join(REPO_ROOT, 'configs', 'quickstart',
                      'smlpnet-mini_1xb32_synthetic-in1k-format.py')
# The sMLP weights are for 64x64 inputs (16/8/4/2 positions per stage).
IMG_SIZE = 64
# Traced at one size, run at three others: the trained size (resampling is
# the identity), a non-square one (each axis resampled to its own size), and
# one that is not a multiple of the stride (padded at each patch conv). None
# is a multiple of 224.
TRACE = (96, 80)
SIZES = [(64, 64), (80, 112), (100, 76)]


def _load_tool():
    spec = importlib.util.spec_from_file_location('pytorch2onnx', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = _load_tool()


def tiny_classifier():
    # in mmpretrain's scope: the module-scoped fixture below is built
    # before conftest's per-test scope reset, in whatever scope the
    # previous test module left (mmseg's after test_backbone.py)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return _build_tiny_classifier()


def _build_tiny_classifier():
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(
                type='SMLPNet',
                arch=dict(embed_dims=8, depths=[1, 1, 2, 1], mlp_ratio=2),
                img_size=IMG_SIZE,
                out_indices=(0, 1, 2, 3)),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=5, in_channels=64)))
    torch.manual_seed(0)
    # Non-trivial BatchNorm statistics and sMLP weights (their init is
    # nearly uniform), so that a wrong resampling or padding shows.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    for name, p in model.named_parameters():
        if 'mix_' in name:
            p.data.normal_(0, 0.3)
    return model.eval()


@pytest.fixture(scope='module')
def classifier():
    return tiny_classifier()


@pytest.mark.parametrize('part', ['model', 'backbone'])
def test_onnx_torchscript_exporter(classifier, part, tmp_path):
    module = tool.TensorOutputs(classifier, part).eval()
    path = str(tmp_path / 'model.onnx')
    tool.export(module, torch.randn(2, 3, *TRACE), path, 'torchscript')
    graph = onnx.load(path).graph
    # The resampling of each sMLP's two mixing maps is in the graph.
    resizes = [n for n in graph.node if n.op_type == 'Resize']
    assert len(resizes) >= 2 * 5
    records = tool.verify(module, path, 'torchscript', SIZES, batch=2)
    shapes = {r['size']: r['shape'] for r in records if r['output'] == 0}
    if part == 'backbone':  # stride 4: ceil(H / 4) x ceil(W / 4)
        assert shapes[(100, 76)] == (2, 8, 25, 19)
    else:
        assert shapes[(100, 76)] == (2, 5)


def test_torch_export_and_dynamo_onnx_exporter(classifier, tmp_path):
    """One torch.export program, run as it is (after save/load) and
    converted by the dynamo-based ONNX exporter."""
    module = tool.TensorOutputs(classifier, 'backbone').eval()
    program = tool.export_program(module, torch.randn(2, 3, *TRACE))
    # the height and width stayed symbolic
    shape = next(n for n in program.graph.nodes
                 if n.op == 'placeholder' and n.name == 'x').meta['val'].shape
    assert all(isinstance(d, torch.SymInt) for d in shape[2:])
    path = str(tmp_path / 'model.pt2')
    tool.export(module, None, path, 'torch-export', program=program)
    records = tool.verify(module, path, 'torch-export', SIZES)
    assert len(records) == 4 * len(SIZES)  # four feature maps per size

    path = str(tmp_path / 'model.onnx')
    tool.export(module, None, path, 'dynamo', program=program)
    records = tool.verify(module, path, 'dynamo', SIZES)
    assert len(records) == 4 * len(SIZES)


def test_export_is_not_eager():
    """is_exporting is on in torch.export and the TorchScript ONNX exporter,
    off in eager mode; both exports take the non-eager (plain) paths."""
    seen = []

    class Probe(torch.nn.Module):

        def forward(self, x):
            seen.append((is_eager(), is_exporting()))
            return x + 1

    x = torch.randn(1, 3, 8, 8)
    Probe()(x)
    assert seen[-1] == (True, False)
    torch.export.export(Probe(), (x, ), strict=False)
    assert seen[-1] == (False, True)
    seen.clear()
    import io
    torch.onnx.export(Probe(), (x, ), io.BytesIO(), dynamo=False)
    assert (False, True) in seen


def test_verify_reports_a_wrong_export(classifier, tmp_path):
    """The check fails, naming the size, when the export differs."""
    module = tool.TensorOutputs(classifier, 'model').eval()
    path = str(tmp_path / 'model.onnx')
    tool.export(module, torch.randn(2, 3, *TRACE), path, 'torchscript')
    with torch.no_grad():
        classifier.head.fc.bias.add_(1.)
    try:
        with pytest.raises(AssertionError, match='64x64, output 0'):
            tool.verify(module, path, 'torchscript', [(64, 64)])
    finally:
        with torch.no_grad():
            classifier.head.fc.bias.sub_(1.)


def test_deployment_script(tmp_path):
    out = str(tmp_path / 'mini.onnx')
    log = run_tool('deployment/pytorch2onnx.py', QUICKSTART, '--output-file',
                   out, '--shape', '96x80', '--verify-sizes', '64x64',
                   '80x112', '100x76')
    assert osp.isfile(out)
    assert 'The export matches PyTorch at 64x64, 80x112, 100x76' in log


def test_deployment_script_refuses_dense_model_part():
    config = osp.join(REPO_ROOT, 'configs', 'upernet',
                      'smlpnet-t_upernet_8xb2-160k_ade20k-512x512.py')
    with pytest.raises(ValueError, match='use --part backbone'):
        tool.build_model(config, part='model')

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Finding mmsmlp's models by name: model-index.yml and the metafiles,
mmpretrain's list_models / get_model after `import mmsmlp`."""
import glob
import os.path as osp
import subprocess
import sys

import pytest
import yaml
from mmengine.config import Config

import mmsmlp.apis  # noqa: F401  (until mmsmlp/__init__.py imports it)
from .conftest import REPO_ROOT

CLS_NAMES = {
    'smlpnet-t_8xb128_in1k', 'smlpnet-s_3rdparty_in1k',
    'smlpnet-b_3rdparty_in1k', 'smlpnet-s_8xb128_in1k',
    'smlpnet-b_8xb128_in1k'
}
PAPER_TOP1 = {'t': 81.9, 's': 83.1, 'b': 83.4}


def read_yaml(path):
    with open(osp.join(REPO_ROOT, path)) as f:
        return yaml.safe_load(f)


def all_models():
    index = read_yaml('model-index.yml')
    models = []
    for metafile in index['Import']:
        models += read_yaml(metafile)['Models']
    return models


def test_model_index_lists_every_config():
    """Each config of the ImageNet, Mask R-CNN and UperNet folders has an
    entry, each entry's config exists, names are unique."""
    models = all_models()
    names = [m['Name'] for m in models]
    assert len(names) == len(set(names))
    configs = {m['Config'] for m in models}
    for config in configs:
        assert osp.isfile(osp.join(REPO_ROOT, config)), config
    for folder in ('smlpnet', 'mask_rcnn', 'upernet'):
        on_disk = {
            osp.relpath(p, REPO_ROOT)
            for p in glob.glob(osp.join(REPO_ROOT, 'configs', folder, '*.py'))
        }
        assert on_disk <= configs, on_disk - configs
    # dense configs: listed without results or weights until there are some
    for m in models:
        if not m['Name'].startswith('smlpnet-') or 'upernet' in m['Name']:
            assert 'Results' not in m and 'Weights' not in m, m['Name']


def test_imagenet_entries():
    """Paper top-1 for T/S/B, the converted weights' file names, and the
    FLOPs and parameters of the configs' models."""
    from mmengine.analysis import get_model_complexity_info
    from mmpretrain.registry import MODELS
    models = {m['Name']: m for m in all_models()}
    assert CLS_NAMES <= set(models)
    for name in ('smlpnet-t_8xb128_in1k', 'smlpnet-s_3rdparty_in1k',
                 'smlpnet-b_3rdparty_in1k'):
        arch = name.split('_')[0][-1]
        m = models[name]
        (result, ) = m['Results']
        assert result['Metrics'] == {'Top 1 Accuracy': PAPER_TOP1[arch]}
        assert m['Weights'] == f'checkpoints/{name}.pth'
    for name in ('smlpnet-s_3rdparty_in1k', 'smlpnet-b_3rdparty_in1k'):
        assert models[name]['Converted From']['Weights'].endswith(
            f'smlp_{name[8]}.pth')
    # parameters of every entry, FLOPs of T (the S and B counts take longer;
    # tests/test_backbone.py checks those against the paper)
    for name in CLS_NAMES:
        m = models[name]
        cfg = Config.fromfile(osp.join(REPO_ROOT, m['Config']))
        model = MODELS.build(cfg.model)
        assert sum(p.numel() for p in model.parameters()) == \
            m['Metadata']['Parameters'], name
        if name == 'smlpnet-t_8xb128_in1k':
            info = get_model_complexity_info(
                model.eval(), input_shape=(3, 224, 224), show_table=False,
                show_arch=False)
            assert info['flops'] == m['Metadata']['FLOPs']


def test_list_and_get_model_after_import():
    """In a fresh process: `import mmsmlp` is all mmpretrain needs."""
    code = (
        'import mmsmlp\n'
        'from mmpretrain import get_model, list_models\n'
        'print(sorted(list_models("*smlp*")))\n'
        'model = get_model("smlpnet-t_8xb128_in1k")\n'
        'print(type(model).__name__, type(model.backbone).__name__, '
        'model.backbone.embed_dims, model.training)\n'
        'print(len(list_models("resnet50*")) > 0)\n')
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO_ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    # mmengine logs INFO lines to stdout while the model is built
    lines = [ln for ln in result.stdout.strip().splitlines()
             if ' - mmengine - ' not in ln]
    assert eval(lines[-3]) == sorted(CLS_NAMES)
    assert lines[-2] == 'ImageClassifier SMLPNet 80 False'
    assert lines[-1] == 'True'  # mmpretrain's own models are still there


def test_get_model_pretrained_names_the_missing_file(tmp_path, monkeypatch):
    """pretrained=True loads the file the metafile names, relative to the
    working directory; without it the error names the file."""
    from mmpretrain import get_model
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError,
                       match='checkpoints/smlpnet-b_3rdparty_in1k.pth'):
        get_model('smlpnet-b_3rdparty_in1k', pretrained=True)


def test_dense_configs_name_the_checkpoint_they_expect():
    """T configs expect a checkpoint of this project's ImageNet training;
    S and B the converted official weights (model-index names)."""
    expected = {
        't': 'checkpoints/smlpnet-t_8xb128_in1k.pth',
        's': 'checkpoints/smlpnet-s_3rdparty_in1k.pth',
        'b': 'checkpoints/smlpnet-b_3rdparty_in1k.pth',
    }
    weights = {m['Weights'] for m in all_models() if 'Weights' in m}
    paths = glob.glob(osp.join(REPO_ROOT, 'configs', 'mask_rcnn', '*.py'))
    paths += glob.glob(osp.join(REPO_ROOT, 'configs', 'upernet', '*.py'))
    for path in paths:
        cfg = Config.fromfile(path)
        init = cfg.model.backbone.init_cfg
        assert init.checkpoint == expected[cfg.model.backbone.arch[0]], path
        assert init.checkpoint in weights
        assert init.prefix == 'backbone.'

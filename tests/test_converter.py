# Copyright (c) mmsmlp contributors. All rights reserved.
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmpretrain.registry import MODELS

from mmsmlp.testing import OfficialSMLPNet
from .conftest import REPO_ROOT, REFERENCE_DATA

CONVERTER = osp.join(REPO_ROOT, 'tools', 'model_converters',
                     'spach2mmsmlp.py')


def convert(src, dst):
    result = subprocess.run([sys.executable, CONVERTER, src, dst],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout


def classifier(arch, img_size, num_classes):
    embed_dims = arch['embed_dims']
    return MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='SMLPNet', arch=arch, img_size=img_size),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=num_classes,
                in_channels=embed_dims * 8))).eval()


def logits(model, x):
    with torch.no_grad():
        return model(x, mode='tensor')


def randomize(model, seed):
    """Non-trivial weights and BatchNorm/LayerNorm statistics and affines."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype != torch.float32:
                continue
            if 'running_var' in name:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif 'running_mean' in name or name.endswith('bias'):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif t.dim() == 1:  # norm weights
                t.copy_(1 + torch.randn(t.shape, generator=g) * 0.2)
            else:
                t.copy_(torch.randn(t.shape, generator=g) / t[0].numel()**.5)
    return model


def test_official_reference_logits(tmp_path):
    src = osp.join(REFERENCE_DATA, 'spach_smlpnet_small.pth')
    expected = torch.load(
        osp.join(REFERENCE_DATA, 'spach_smlpnet_small_expected.pth'))
    dst = str(tmp_path / 'converted.pth')
    out = convert(src, dst)
    assert "'embed_dims': 16, 'depths': [1, 1, 2, 1], 'mlp_ratio': 3" in out
    assert 'trained at 224x224' in out and '10 classes' in out
    model = classifier(expected['arch'], expected['img_size'],
                       expected['num_classes'])
    state_dict = torch.load(dst)['state_dict']
    model.load_state_dict(state_dict, strict=True)
    diff = (logits(model, expected['input']) - expected['logits']).abs()
    assert diff.max() < 1e-5


def test_reference_formulation_matches_official_logits():
    expected = torch.load(
        osp.join(REFERENCE_DATA, 'spach_smlpnet_small_expected.pth'))
    official = OfficialSMLPNet(dim=16, depths=[1, 1, 2, 1], num_classes=10)
    official.load_state_dict(
        torch.load(osp.join(REFERENCE_DATA,
                            'spach_smlpnet_small.pth'))['model'])
    with torch.no_grad():
        out = official.eval()(expected['input'])
    assert (out - expected['logits']).abs().max() < 1e-6


@pytest.mark.parametrize('dim,depths,alpha,size,classes', [
    (8, [2, 1, 3, 1], 2, 64, 7),
    (12, [1, 2, 1, 2], 4, 96, 1000),
    (16, [1, 1, 1, 1], 3, 128, 3),
])
def test_parity_any_architecture(tmp_path, dim, depths, alpha, size,
                                 classes):
    official = randomize(
        OfficialSMLPNet(dim=dim, alpha=alpha, num_classes=classes,
                        image_size=size, depths=depths), seed=dim).eval()
    src, dst = str(tmp_path / 'official.pth'), str(tmp_path / 'mm.pth')
    torch.save({'model': official.state_dict()}, src)
    convert(src, dst)
    meta = torch.load(dst)['meta']['sMLPNet']
    assert meta['arch'] == dict(embed_dims=dim, depths=depths,
                                mlp_ratio=alpha)
    assert (meta['img_size'], meta['num_classes']) == (size, classes)
    model = classifier(meta['arch'], size, classes)
    model.load_state_dict(torch.load(dst)['state_dict'], strict=True)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = official(x)
    assert (logits(model, x) - expected).abs().max() < 1e-5


def test_refuses_unknown_key(tmp_path):
    official = OfficialSMLPNet(dim=8, depths=[1, 1, 1, 1], image_size=64)
    state_dict = official.state_dict()
    state_dict['token_mix.0.1.extra.weight'] = torch.zeros(1)
    src = str(tmp_path / 'bad.pth')
    torch.save({'model': state_dict}, src)
    result = subprocess.run(
        [sys.executable, CONVERTER, src, str(tmp_path / 'out.pth')],
        capture_output=True, text=True)
    assert result.returncode != 0
    assert "cannot map key 'token_mix.0.1.extra.weight'" in result.stderr
    assert not osp.exists(tmp_path / 'out.pth')


def test_refuses_non_smlpnet(tmp_path):
    src = str(tmp_path / 'resnet.pth')
    torch.save({'model': {'conv1.weight': torch.zeros(64, 3, 7, 7)}}, src)
    result = subprocess.run(
        [sys.executable, CONVERTER, src, str(tmp_path / 'out.pth')],
        capture_output=True, text=True)
    assert result.returncode != 0
    assert "key 'to_patch_embedding.0.0.weight' is missing" in result.stderr


def test_converted_checkpoint_through_tools_test(imagenet_root, tmp_path):
    """The converted reference checkpoint, evaluated by tools/test.py with
    the sMLPNet-S ImageNet config, scores like the official model."""
    from mmengine.config import Config
    from mmengine.fileio import load
    from mmpretrain.datasets import ImageNet

    expected = torch.load(
        osp.join(REFERENCE_DATA, 'spach_smlpnet_small_expected.pth'))
    dst = str(tmp_path / 'converted.pth')
    convert(osp.join(REFERENCE_DATA, 'spach_smlpnet_small.pth'), dst)
    arch = expected['arch']
    # the S config with the reference checkpoint's architecture
    config = str(tmp_path / 'smlpnet-ref_in1k.py')
    with open(config, 'w') as f:
        f.write(f'_base_ = {osp.join(REPO_ROOT, "configs", "smlpnet", "smlpnet-s_8xb128_in1k.py")!r}\n'  # noqa: E501
                f'model = dict(backbone=dict(arch=dict(_delete_=True, '
                f'**{arch!r})), head=dict(num_classes=10, in_channels=128))\n'
                'data_preprocessor = dict(num_classes=10)\n')
    options = [
        f'test_dataloader.dataset.data_root={imagenet_root}',
        'test_dataloader.num_workers=0',
        'test_dataloader.persistent_workers=False',
        'test_dataloader.batch_size=16', 'custom_hooks=[]'
    ]
    preds = str(tmp_path / 'preds.pkl')
    result = subprocess.run([
        sys.executable,
        osp.join(REPO_ROOT, 'tools', 'test.py'), config, dst, '--work-dir',
        str(tmp_path / 'work'), '--out', preds, '--cfg-options', *options
    ], capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'accuracy/top1' in result.stdout + result.stderr

    # The same images through the config's test pipeline and the official
    # model give the same scores.
    cfg = Config.fromfile(config)
    dataset = ImageNet(
        data_root=imagenet_root, split='val', pipeline=cfg.test_pipeline)
    official = OfficialSMLPNet(
        dim=arch['embed_dims'], depths=arch['depths'], num_classes=10)
    official.load_state_dict(
        torch.load(osp.join(REFERENCE_DATA,
                            'spach_smlpnet_small.pth'))['model'])
    official.eval()
    mean = torch.tensor(cfg.data_preprocessor.mean).view(3, 1, 1)
    std = torch.tensor(cfg.data_preprocessor.std).view(3, 1, 1)
    dumped = load(preds)
    assert len(dumped) == len(dataset)
    for i in (0, len(dataset) - 1):
        img = dataset[i]['inputs'].flip(0).float()  # BGR -> RGB
        with torch.no_grad():
            scores = official(((img - mean) / std)[None]).softmax(-1)[0]
        torch.testing.assert_close(
            dumped[i]['pred_score'], scores, atol=1e-5, rtol=0)

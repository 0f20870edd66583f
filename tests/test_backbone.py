# Copyright (c) mmsmlp contributors. All rights reserved.
import copy

import pytest
import torch
from mmengine.analysis import get_model_complexity_info
from mmpretrain.registry import MODELS
from torch.nn.modules.batchnorm import _BatchNorm

from mmsmlp.models import SMLPNet
from mmsmlp.models.backbones.smlpnet import SMLPBlock, drop_path_scales
from mmsmlp.models.utils.fast_paths import set_mode

SMALL_ARCH = dict(embed_dims=16, depths=[1, 1, 2, 1], mlp_ratio=3)


def small(**kwargs):
    kwargs.setdefault('arch', SMALL_ARCH)
    kwargs.setdefault('img_size', 64)
    return SMLPNet(**kwargs)


@pytest.mark.parametrize('out_indices', [0, 1, 2, 3, -1, (0, 1, 2, 3),
                                         (1, 3), [0, 2]])
@pytest.mark.parametrize('size', [(64, 64), (96, 64), (32, 160), (70, 45)])
def test_stage_outputs(out_indices, size):
    model = small(out_indices=out_indices).eval()
    indices = out_indices if isinstance(out_indices, (tuple, list)) else [
        out_indices
    ]
    indices = sorted(i % 4 for i in indices)
    with torch.no_grad():
        outs = model(torch.randn(2, 3, *size))
    assert isinstance(outs, tuple) and len(outs) == len(indices)
    for i, out in zip(indices, outs):
        stride = 4 * 2**i
        # sizes that are not multiples of the stride are padded (ceil)
        expected = (2, 16 * 2**i, -(-size[0] // stride), -(-size[1] // stride))
        assert out.shape == expected


def test_registered_and_aliases():
    model = MODELS.build(dict(type='SMLPNet', arch='t', img_size=224))
    assert model.channels == [80, 160, 320, 640]
    assert model.depths == [2, 8, 14, 2]
    assert SMLPNet(arch='S').depths == [2, 10, 24, 2]
    assert SMLPNet(arch='base').embed_dims == 112


def test_bad_arch_messages():
    with pytest.raises(KeyError, match=r"'huge'.*\['b', 'base', 's'"):
        SMLPNet(arch='huge')
    with pytest.raises(KeyError, match=r"misses the keys \['mlp_ratio'\]"):
        SMLPNet(arch=dict(embed_dims=8, depths=[1, 1, 1, 1]))
    with pytest.raises(ValueError, match='multiple of 32'):
        SMLPNet(arch='t', img_size=100)
    # 0 and negative multiples of the stride: refused when built, not at the
    # first forward pass
    for size in (0, -32, (224, 0)):
        with pytest.raises(ValueError,
                           match=r'img_size .* must be a positive multiple '
                           r'of 32 \(the last stage.s stride: 32, 64'):
            SMLPNet(arch='t', img_size=size)
    with pytest.raises(ValueError, match='out_indices 4'):
        SMLPNet(arch='t', out_indices=(4, ))


# Official models with a 1000-class head: 24.1M / 48.6M / 65.9M parameters;
# paper FLOPs at 224: 5.0G / 10.3G / 14.0G.
@pytest.mark.parametrize('arch,params,gflops', [('tiny', 24.1, 5.0),
                                                ('small', 48.6, 10.3),
                                                ('base', 65.9, 14.0)])
def test_params_and_flops(arch, params, gflops):
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='SMLPNet', arch=arch),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(
                type='LinearClsHead',
                num_classes=1000,
                in_channels=SMLPNet(arch=arch).channels[-1])))
    n = sum(p.numel() for p in model.parameters())
    assert round(n / 1e6, 1) == params
    model.eval()
    info = get_model_complexity_info(
        model, input_shape=(3, 224, 224), show_table=False, show_arch=False)
    assert abs(info['flops'] / 1e9 - gflops) / gflops < 0.01


def test_frozen_stages():
    model = small(frozen_stages=2, out_indices=(0, 1, 2, 3))
    model.train()
    for i in range(4):
        modules = [model.downsample_layers[i], model.stages[i],
                   getattr(model, f'norm{i}')]
        for m in modules:
            for p in m.parameters():
                assert p.requires_grad == (i >= 2)
            for sub in m.modules():
                if isinstance(sub, _BatchNorm):
                    assert sub.training == (i >= 2)
    outs = model(torch.randn(2, 3, 64, 64))
    sum(o.sum() for o in outs).backward()
    assert model.stages[0][0].smlp.fuse.weight.grad is None
    assert model.stages[3][0].smlp.fuse.weight.grad is not None
    # frozen BatchNorm statistics do not move
    bn = model.stages[1][0].norm1
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64) * 5 + 3)
    assert torch.equal(bn.running_mean, before)


def test_norm_eval():
    model = small(norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and not any(m.training for m in bns)
    assert model.stages[0][0].smlp.training  # the rest still trains
    before = bns[0].running_mean.clone()
    model(torch.randn(2, 3, 64, 64) + 1)
    assert torch.equal(bns[0].running_mean, before)
    # without norm_eval the statistics move
    model = small().train()
    bn = model.stages[0][0].norm1
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64) + 1)
    assert not torch.equal(bn.running_mean, before)


def test_drop_path():
    model = small(drop_path_rate=0.5)
    rates = [b.drop_path.drop_prob if hasattr(b.drop_path, 'drop_prob')
             else 0. for stage in model.stages for b in stage]
    assert rates == pytest.approx([0., 0.5 / 4, 1 / 4, 1.5 / 4, 0.5])
    x = torch.randn(4, 3, 64, 64)
    model.train()
    torch.manual_seed(0)
    a = model(x)[0]
    torch.manual_seed(1)
    b = model(x)[0]
    assert not torch.allclose(a, b)  # stochastic in training
    model.eval()
    assert torch.equal(model(x)[0], model(x)[0])  # identity in eval


@pytest.mark.parametrize('norm_eval', [False, True])
def test_drop_path_fast_form_is_the_plain_formula(norm_eval):
    """Eager training draws both branches' drop-path scales at once and
    applies each with its residual add (:func:`drop_path_scales`): with the
    scales the seed gives, the plain formula ``x + y / keep * mask``,
    forward and gradients."""
    torch.manual_seed(0)
    # fp64: the plain form sums in another order
    fast = SMLPBlock(16, (8, 8), drop_path_rate=0.5).double().train()
    if norm_eval:
        fast.norm1.eval(), fast.norm2.eval()
    plain = copy.deepcopy(fast)
    x = torch.randn(6, 8, 8, 16, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(1)
    out = fast(x)
    out.square().sum().backward()

    torch.manual_seed(1)  # the same draw, written out
    mask = x.new_empty(2, 6, 1, 1, 1).bernoulli_(0.5)
    assert 0 < mask.sum() < 12  # some samples dropped, some kept
    x_plain = x.detach().clone().requires_grad_()
    with set_mode('plain'):
        y = x_plain + plain.token_mix(x_plain) / 0.5 * mask[0]
        expected = y + plain.ffn(plain.norm3(y)) / 0.5 * mask[1]
    expected.square().sum().backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(x.grad, x_plain.grad)
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_drop_path_scales_statistics():
    """Each branch is dropped with probability drop_prob, independently
    of the other; the kept ones are scaled by 1 / keep."""
    torch.manual_seed(0)
    scales = drop_path_scales(torch.randn(20000, 2, 2, 4), 0.25)
    assert scales.shape == (2, 20000, 1, 1, 1)
    kept = scales != 0
    assert scales.unique().tolist() == pytest.approx([0., 1 / 0.75])
    assert kept.float().mean().item() == pytest.approx(0.75, abs=0.01)
    both = (kept[0] & kept[1]).float().mean().item()
    assert both == pytest.approx(0.75**2, abs=0.01)


@pytest.mark.parametrize('size', [(64, 64), (96, 80)])
def test_with_cp_same_outputs_and_grads(size):
    """At the weights' size and at one whose mixing maps the stages
    resample (outside the checkpointed blocks)."""
    torch.manual_seed(0)
    plain = small(drop_path_rate=0.)
    cp = small(with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, *size, requires_grad=True)
    out_plain = plain(x)[0]
    out_cp = cp(x)[0]
    torch.testing.assert_close(out_cp, out_plain)
    out_plain.sum().backward()
    out_cp.sum().backward()
    for (name, p), q in zip(plain.named_parameters(), cp.parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=name)


def test_pretrained_argument_as_mmseg_and_mmdet_pass_it():
    """mmseg's segmentors (and older mmdet configs) pass `pretrained` to the
    backbone: None is accepted, a path becomes the Pretrained init of an
    ImageClassifier checkpoint, both it and init_cfg is an error."""
    assert SMLPNet(arch=SMALL_ARCH, pretrained=None).init_cfg is None
    with pytest.warns(UserWarning, match='`pretrained` is deprecated'):
        model = SMLPNet(arch=SMALL_ARCH, pretrained='ckpt.pth')
    assert model.init_cfg == dict(
        type='Pretrained', checkpoint='ckpt.pth', prefix='backbone.')
    with pytest.raises(ValueError, match='set only one'):
        SMLPNet(arch=SMALL_ARCH, pretrained='ckpt.pth',
                init_cfg=dict(type='Pretrained', checkpoint='x.pth'))
    with pytest.raises(TypeError, match='pretrained must be'):
        SMLPNet(arch=SMALL_ARCH, pretrained=True)


def test_in_an_mmseg_fpn_config():
    """mmseg's FPN base config with the backbone swapped: the segmentor's
    `pretrained=None` reaches SMLPNet, and the model runs."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS as SEG_MODELS
    cfg = Config.fromstring(
        "_base_ = 'mmseg::_base_/models/fpn_r50.py'\n"
        "norm_cfg = dict(type='BN', requires_grad=True)\n"
        'model = dict(pretrained=None, data_preprocessor=None, backbone=dict('
        "_delete_=True, type='SMLPNet', arch=dict(embed_dims=8, depths=[1, "
        "1, 1, 1], mlp_ratio=2), img_size=64, out_indices=(0, 1, 2, 3)), "
        'neck=dict(in_channels=[8, 16, 32, 64], out_channels=16), '
        'decode_head=dict(in_channels=[16, 16, 16, 16], channels=16, '
        'num_classes=3, norm_cfg=norm_cfg))\n',
        file_format='.py')
    assert cfg.model.pretrained is None
    init_default_scope('mmseg')
    model = SEG_MODELS.build(cfg.model).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96), mode='tensor')
    assert out.shape == (1, 3, 16, 24)

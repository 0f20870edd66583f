# Copyright (c) mmsmlp contributors. All rights reserved.
"""FlatReduceDDP: the backbone's gradients all-reduced as one flat tensor
(two CPU processes, gloo), as DDP reduces them."""
import os.path as osp

import pytest
import torch

from mmsmlp.engine import FlatReduceDDP
from mmsmlp.engine.model_wrappers.flat_reduce_ddp import flat_buffer_of
from mmsmlp.models.utils.cuda_graph import views_of_one_buffer

from .conftest import REPO_ROOT, run_two_cpu_ranks


@pytest.fixture(scope='module')
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp('flat_reduce')
    run_two_cpu_ranks('flat_reduce_probe.py', out)
    return [torch.load(out / f'rank{r}.pt') for r in (0, 1)]


def test_trains_as_ddp_with_accumulation(ranks):
    """Four train_steps (two accumulated in no_sync, momentum SGD), ranks
    on different data and starting from different weights: the same
    parameters as under mmengine's DDP wrapper, on both ranks."""
    for rank in ranks:
        ddp = rank['trained']['MMDistributedDataParallel']
        flat = rank['trained']['FlatReduceDDP']
        assert ddp.keys() == flat.keys()
        for name in ddp:
            torch.testing.assert_close(flat[name], ddp[name], msg=name)
    for name, value in ranks[0]['trained']['FlatReduceDDP'].items():
        torch.testing.assert_close(
            ranks[1]['trained']['FlatReduceDDP'][name], value, msg=name)
    # the steps moved every parameter from rank 0's start
    for name, value in ranks[0]['initial'].items():
        assert not torch.equal(ranks[0]['trained']['FlatReduceDDP'][name],
                               value), name


def test_leaves_the_backbone_out_of_ddps_buckets(ranks):
    assert ranks[0]['ignored'] == [
        'backbone.0.bias', 'backbone.0.weight', 'backbone.2.bias',
        'backbone.2.weight'
    ]


def test_reduces_a_replays_buffer_as_it_is(ranks):
    """Gradients that tile one buffer (as a graph replay leaves them, one
    in channels_last) are reduced in place, to DDP's values."""
    for rank in ranks:
        ddp = rank['one_buffer']['MMDistributedDataParallel']['grads']
        flat = rank['one_buffer']['FlatReduceDDP']
        assert flat['reduced_as_is']
        for name in ddp:
            torch.testing.assert_close(flat['grads'][name], ddp[name],
                                       msg=name)
    assert not ranks[0]['one_buffer']['MMDistributedDataParallel'][
        'reduced_as_is']


def test_a_parameter_without_gradient_is_named(ranks):
    for rank in ranks:
        assert 'backbone.spare' in rank['unused']
        assert 'got no gradient' in rank['unused']


def test_flat_buffer_of_views_in_order():
    params = [torch.empty(2, 3, 4, 4).to(memory_format=torch.channels_last),
              torch.empty(5), torch.empty(3, 2)]
    flat, views = views_of_one_buffer(params)
    found = flat_buffer_of(views)
    assert found.data_ptr() == flat.data_ptr() and found.numel() == 107
    assert flat_buffer_of(views[::-1]) is None  # not in order
    assert flat_buffer_of([views[0], views[2]]) is None  # a gap
    assert flat_buffer_of([torch.empty(3), torch.empty(3)]) is None
    assert flat_buffer_of([views[0].transpose(0, 1)]) is None  # not dense


def test_names_a_missing_submodule():
    model = torch.nn.Module()
    model.head = torch.nn.Linear(2, 2)
    with pytest.raises(KeyError, match=r"'backbone'.*\['head'\]"):
        FlatReduceDDP(model)


def test_built_from_a_config_and_read_by_the_graph_hook(tmp_path):
    """The ImageNet configs' ``model_wrapper_cfg`` builds it from
    mmpretrain's scope; CUDAGraphHook leaves DDP's gradient route only for
    what it reduces (a process group of one, gloo)."""
    import torch.distributed as dist
    from mmengine.config import Config
    from mmengine.model import MMDistributedDataParallel, is_model_wrapper
    from mmengine.registry import MODEL_WRAPPERS, init_default_scope
    from mmpretrain.registry import MODELS

    from mmsmlp.engine.hooks.cuda_graph_hook import _reduced_by_ddp

    init_default_scope('mmpretrain')
    cfg = Config.fromfile(osp.join(
        REPO_ROOT, 'configs', 'quickstart',
        'smlpnet-mini_1xb32_synthetic-in1k-format.py'))
    wrapper_cfg = Config.fromfile(osp.join(
        REPO_ROOT, 'configs', 'smlpnet',
        'smlpnet-s_8xb128_in1k.py')).model_wrapper_cfg
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/r',
                            rank=0, world_size=1)
    try:
        flat = MODEL_WRAPPERS.build(
            dict(wrapper_cfg, device_ids=None),
            default_args=dict(module=MODELS.build(cfg.model)))
        plain = MMDistributedDataParallel(
            module=MODELS.build(cfg.model), device_ids=None)
        assert isinstance(flat, FlatReduceDDP) and is_model_wrapper(flat)
        assert not _reduced_by_ddp(flat, flat.module.backbone)
        assert _reduced_by_ddp(flat, flat.module.head)
        assert _reduced_by_ddp(plain, plain.module.backbone)
    finally:
        dist.destroy_process_group()

# Copyright (c) mmsmlp contributors. All rights reserved.
"""tools/analysis_tools/benchmark.py builds every model it compares (speed
itself is measured on a GPU, never here)."""

import pytest
import torch

from .conftest import import_tool


def load_tool():
    return import_tool('analysis_tools/benchmark.py')


@pytest.mark.parametrize('name', ['timm-convnext-t', 'timm-swin-t',
                                  'convnext-t', 'smlpnet-t-plain'])
def test_builds_the_model_it_names(name):
    tool = load_tool()
    model = tool.build(name).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 224, 224))
    assert logits.shape == (2, 1000)
    if name.startswith('timm-'):
        assert type(model).__module__.startswith('timm.')


def test_timm_peers_are_measured_and_compared_to():
    """With timm installed (requirements/tests.txt; the GPU machine has
    it) its ConvNeXt-T and Swin-T are in the default list and get ratio
    columns; an unknown name lists the choices."""
    tool = load_tool()
    assert tool.HAS_TIMM
    for name in ('timm-convnext-t', 'timm-swin-t'):
        assert name in tool.DEFAULT_MODELS and name in tool.RATIO_PEERS
    with pytest.raises(KeyError, match='timm-convnext-t'):
        tool.build('convnext-x')


@pytest.mark.parametrize('size', ['t', 's', 'b'])
def test_reference_formulations_match_each_size(size):
    """reference-s / -b are the official formulation of sMLPNet-S / -B:
    as many parameters, tensor by tensor in size, as mmsmlp's model the
    converter maps them to (one 1:1 key table for every size)."""
    tool = load_tool()
    ours = tool.build(f'smlpnet-{size}')
    reference = tool.build(f'reference-{size}')
    numel = sorted(p.numel() for p in ours.parameters())
    assert numel == sorted(p.numel() for p in reference.parameters())
    assert sum(numel) > 20e6


@pytest.mark.parametrize('config, norm_eval', [
    ('mask_rcnn/mask-rcnn_smlpnet-t_fpn_1x_coco.py', True),
    ('upernet/smlpnet-t_upernet_8xb2-160k_ade20k-512x512.py', True),
])
def test_profile_step_builds_a_dense_configs_backbone(config, norm_eval,
                                                      monkeypatch):
    """profile_step.py --backbone-of: the backbone as the config trains it
    (frozen statistics, every stage's output), without its checkpoint."""
    from .conftest import REPO_ROOT
    # it imports benchmark.py from its own folder, as a script does
    monkeypatch.syspath_prepend(f'{REPO_ROOT}/tools/analysis_tools')
    tool = import_tool('analysis_tools/profile_step.py')
    backbone = tool.build_backbone(f'{REPO_ROOT}/configs/{config}')
    assert type(backbone).__name__ == 'SMLPNet'
    assert backbone.norm_eval is norm_eval
    assert backbone.out_indices == (0, 1, 2, 3)
    backbone.train()
    assert not backbone.stages[0][1].norm1.training  # frozen statistics


def test_profile_step_sorts_kernels_by_kind(monkeypatch):
    """profile_step.py's summary by kind, on kernel names of an H200
    profile (inductor's, cuBLAS', cuDNN's, mmsmlp's Triton kernels,
    PyTorch's)."""
    from .conftest import REPO_ROOT
    monkeypatch.syspath_prepend(f'{REPO_ROOT}/tools/analysis_tools')
    tool = import_tool('analysis_tools/profile_step.py')
    names = {
        'triton_red_fused__native_batch_norm_legit_functional_permute_'
        'view_84': 'inductor reductions',
        'triton_per_fused__to_copy_native_layer_norm_view_58':
        'inductor reductions',
        'triton_poi_fused_gelu_gelu_backward_view_96': 'inductor pointwise',
        'nvjet_sm90_tst_160x256_64x3_1x2_h_bz_coopA_NNN': 'matmuls',
        'void cutlass::Kernel2<cutlass_80_wmma_tensorop_bf16_s161616gemm_'
        'bf16_16x16_32x1_nt_align2>': 'matmuls',
        'dgrad2d_c1_k1_nhwc_specialized': 'convolutions',
        'Memcpy DtoD (Device -> Device)': 'copies, casts and fills',
        'void at::native::elementwise_kernel<128, 4, at::native::gpu_kernel_'
        'impl_nocast<at::native::direct_copy_kernel_cuda':
        'copies, casts and fills',
        '_bn_gelu_bwd_reduce': 'mmsmlp Triton kernels',
        '_mix_fwd': 'mmsmlp Triton kernels',
        '_bn_stats_finalize': 'mmsmlp Triton kernels',
        'void at::native::vectorized_elementwise_kernel<8, at::native::'
        'CUDAFunctor_add<c10::BFloat16>': 'PyTorch elementwise and '
        'reductions',
    }
    assert {n: tool.kernel_kind(n) for n in names} == names


def test_profile_step_names_where_copies_come_from(monkeypatch):
    """profile_step.py --copies: each aten::copy_ of a CPU profile counted
    per step by the ops around it (innermost first) and its shapes."""
    from torch.profiler import ProfilerActivity, profile, record_function

    from .conftest import REPO_ROOT
    monkeypatch.syspath_prepend(f'{REPO_ROOT}/tools/analysis_tools')
    tool = import_tool('analysis_tools/profile_step.py')
    x = torch.randn(3, 5)
    with profile(activities=[ProfilerActivity.CPU],
                 record_shapes=True) as prof:
        for _ in range(2):  # two steps
            with record_function('transposed_operand'):
                x.t().contiguous()  # a clone, copying once
            x.clone()
    origins = tool.copy_origins(prof.events(), steps=2)
    assert sorted(origins) == [
        (1, 'aten::clone', '[[3, 5], [3, 5], []]'),
        (1, 'aten::clone < aten::contiguous < transposed_operand',
         '[[5, 3], [5, 3], []]'),
    ]

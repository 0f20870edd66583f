# Copyright (c) mmsmlp contributors. All rights reserved.
"""The Triton kernels (LayerNorm, BatchNorm + GELU) equal PyTorch's ops.

Without a GPU they run on CPU tensors under Triton's interpreter (conftest
sets ``TRITON_INTERPRET=1`` then); with one, on CUDA as compiled kernels."""
import os
import subprocess
import sys
import types

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmsmlp.models.backbones.smlpnet import SMLPBlock
from mmsmlp.models import SparseMLP
from mmsmlp.models.utils import axial_mix as axial_mix_module
from mmsmlp.models.utils import channel_mlp as channel_mlp_module
from mmsmlp.models.utils import layer_norm as layer_norm_module
from mmsmlp.models.utils import norm_act as norm_act_module
from mmsmlp.models.utils.channel_mlp import ChannelMLP
from mmsmlp.models.utils.fast_paths import (get_mode, graph_capture,
                                            mode_from_environment,
                                            set_mode, use_triton)
from mmsmlp.models.utils.layer_norm import layer_norm
from mmsmlp.models.utils.norm_act import batch_norm_gelu
from .conftest import assert_same_gradients
from .test_norm_act import randomized_bn

DEVICE = 'cuda' if torch.cuda.is_available() else 'cpu'


@pytest.fixture
def kernels():
    """The Triton kernels, forward and backward, run for tensors of
    DEVICE."""
    with set_mode('triton-train', triton_on_cpu=DEVICE == 'cpu'):
        assert use_triton(torch.empty(1, device=DEVICE), backward=True)
        yield DEVICE


def test_when_kernels_run():
    x = torch.empty(1)
    with set_mode('default', triton_on_cpu=False):
        assert not use_triton(x, backward=False)  # a CPU tensor
        with set_mode(triton_on_cpu=True):
            # default: inference only
            assert use_triton(x, backward=False)
            assert not use_triton(x, backward=True)
            with set_mode('triton-train'):
                assert use_triton(x, backward=False)
                assert use_triton(x, backward=True)
            for mode in ('no-triton', 'plain'):
                with set_mode(mode):
                    assert not use_triton(x, backward=False)
                    assert not use_triton(x, backward=True)
            assert get_mode() == 'default'  # restored at each block's end
            assert use_triton(x, backward=False)
        assert not use_triton(x, backward=False)


def test_set_mode_for_the_process():
    """Called without ``with``, set_mode lasts until the next call."""
    previous = get_mode()
    try:
        set_mode('plain')
        assert get_mode() == 'plain'
    finally:
        set_mode(previous)
    assert get_mode() == previous
    with pytest.raises(ValueError, match="mode must be one of .*'plain'.*"
                       "got 'fast'"):
        set_mode('fast')
    assert get_mode() == previous


def test_kernels_only_on_the_current_cuda_device(monkeypatch):
    """Triton launches on the current device: a tensor on another CUDA
    device takes PyTorch's ops (stand-ins for CUDA tensors here)."""
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 0)

    def cuda_tensor(index):
        return types.SimpleNamespace(is_cuda=True, get_device=lambda: index)

    with set_mode('default', triton_on_cpu=False):
        assert use_triton(cuda_tensor(0), backward=False)
        assert not use_triton(cuda_tensor(1), backward=False)


def test_environment_switch():
    assert mode_from_environment({}) == 'default'
    for mode in ('plain', 'no-triton', 'default', 'triton-train'):
        assert mode_from_environment({'MMSMLP_FAST_PATHS': mode}) == mode
    # The older variable, with its meanings.
    for value, mode in (('0', 'no-triton'), ('1', 'default'),
                        ('train', 'triton-train')):
        assert mode_from_environment({'MMSMLP_TRITON': value}) == mode
        assert mode_from_environment({'MMSMLP_TRITON': value,
                                      'MMSMLP_FAST_PATHS': mode}) == mode
    with pytest.raises(ValueError, match="MMSMLP_FAST_PATHS must be one of "
                       r"\('plain', 'no-triton', 'default', 'triton-train'\)"
                       ", got 'yes'"):
        mode_from_environment({'MMSMLP_FAST_PATHS': 'yes'})
    with pytest.raises(ValueError, match="MMSMLP_TRITON must be 0, 1 or "
                       "train, got 'yes'"):
        mode_from_environment({'MMSMLP_TRITON': 'yes'})
    with pytest.raises(ValueError, match='MMSMLP_FAST_PATHS=plain and '
                       'MMSMLP_TRITON=train disagree'):
        mode_from_environment({'MMSMLP_FAST_PATHS': 'plain',
                               'MMSMLP_TRITON': 'train'})
    # Read at import.
    env = {k: v for k, v in os.environ.items() if k != 'MMSMLP_TRITON'}
    out = subprocess.run(
        [sys.executable, '-c', 'from mmsmlp.models.utils import fast_paths'
         ' as f; print(f.get_mode())'],
        env={**env, 'MMSMLP_FAST_PATHS': 'plain'}, capture_output=True,
        text=True, check=True).stdout
    assert out.split() == ['plain']


@pytest.fixture
def default_mode():
    """The default mode, the kernels running for tensors of DEVICE."""
    with set_mode('default', triton_on_cpu=DEVICE == 'cpu'):
        yield DEVICE


def test_inference_kernels_by_default(default_mode, monkeypatch):
    """Default mode: an eval-mode block without autograd launches the
    kernels (its output differs from the plain formulas' by rounding only);
    training launches none."""
    launched = []
    for module, name in ((layer_norm_module, '_layer_norm_fwd'),
                         (norm_act_module, '_bn_gelu_fwd')):
        kernel = getattr(module, name)
        monkeypatch.setattr(module, name, _Recorder(kernel, name, launched))
    block = SMLPBlock(16, (6, 6)).to(DEVICE)
    x = torch.randn(2, 6, 6, 16, device=DEVICE)
    block(x.requires_grad_()).sum().backward()
    assert launched == []
    block.eval()
    with torch.no_grad():
        out = block(x)
        assert sorted(set(launched)) == ['_bn_gelu_fwd', '_layer_norm_fwd']
        with set_mode('plain'):
            torch.testing.assert_close(out, block(x))


class _Recorder:
    """A Triton kernel that records its launches."""

    def __init__(self, kernel, name, launched):
        self.kernel, self.name, self.launched = kernel, name, launched

    def __getitem__(self, grid):
        self.launched.append(self.name)
        return self.kernel[grid]


# Row counts that do not fill the last tile; channel counts of sMLPNet's
# stages and odd ones (masked columns).
@pytest.mark.parametrize('shape', [(2, 7, 5, 80), (3, 11, 160), (37, 5)])
def test_layer_norm_kernel_fp32(kernels, shape):
    torch.manual_seed(0)
    C = shape[-1]
    x = torch.randn(shape, device=kernels).mul_(3).add_(1).requires_grad_()
    w = torch.randn(C, device=kernels, requires_grad=True)
    b = torch.randn(C, device=kernels, requires_grad=True)
    out = layer_norm(x, w, b, 1e-6)
    want = F.layer_norm(x, (C, ), w, b, 1e-6)
    torch.testing.assert_close(out, want)
    assert_same_gradients(out, want, [x, w, b])


def test_layer_norm_kernel_bf16_keeps_dtype(kernels):
    torch.manual_seed(0)
    x = torch.randn(4, 9, 80, device=kernels).bfloat16().requires_grad_()
    w = torch.randn(80, device=kernels, requires_grad=True)
    b = torch.randn(80, device=kernels, requires_grad=True)
    with torch.autocast(kernels, dtype=torch.bfloat16):
        out = layer_norm(x, w, b, 1e-6)
    assert out.dtype == torch.bfloat16
    x32 = x.detach().float().requires_grad_()
    want = F.layer_norm(x32, (80, ), w, b, 1e-6)
    torch.testing.assert_close(out.float(), want, atol=0.05, rtol=0.02)
    grad = torch.randn_like(want)
    gx, gw, gb = torch.autograd.grad(out, [x, w, b], grad.bfloat16())
    ex, ew, eb = torch.autograd.grad(want, [x32, w, b], grad)
    assert gx.dtype == torch.bfloat16 and gw.dtype == torch.float32
    torch.testing.assert_close(gx.float(), ex, atol=0.1, rtol=0.05)
    torch.testing.assert_close(gw, ew, atol=0.2, rtol=0.02)
    torch.testing.assert_close(gb, eb, atol=0.2, rtol=0.02)


# Channels split into chunks of 16 (80), 32 (96, 160) and 128 (256), a
# width padded to a power of two (7); one row tile, and several row tiles
# per program (M = 2000 at 80 channels: 8 tiles of 256 rows, 6 programs
# per chunk on CPU; on a GPU, 40 programs for 16 channels, more than the
# statistics' finalize sums in one load); a mean far from 0 (the
# statistics are sums of x shifted by a sample: without the shift, the
# variance would lose about 1% to cancellation here, while x's own
# rounding moves the output by 1e-4).
@pytest.mark.parametrize('channels, size, mean', [
    (80, (3, 5, 7), 0.5), (7, (3, 5, 7), 0.5), (96, (2, 3, 4), 0.5),
    (256, (2, 3, 4), 0.5), (80, (4, 20, 25), 0.5), (16, (8, 32, 40), 0.5),
    (160, (2, 5, 7), 1e3)])
def test_batch_norm_gelu_kernel_in_training(kernels, channels, size, mean):
    bn = randomized_bn(channels).to(kernels)
    plain = randomized_bn(channels).to(kernels)  # the same (seeded) values
    N, H, W = size
    x = torch.randn(N, channels, H, W, device=kernels) * 2 + mean
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = batch_norm_gelu(bn, x1.permute(0, 2, 3, 1))
    want = F.gelu(plain(x2)).permute(0, 2, 3, 1)
    # fp32 sums over up to 2000 rows, in another order than PyTorch's
    tol = dict(rtol=1e-3, atol=1e-3) if mean > 100 else dict(rtol=1e-5,
                                                             atol=1e-4)
    torch.testing.assert_close(out, want, **tol)
    assert_same_gradients(out, want, [x1, bn.weight, bn.bias],
                          [x2, plain.weight, plain.bias], **tol)
    for name, buffer in plain.named_buffers():
        torch.testing.assert_close(getattr(bn, name), buffer, msg=name)


def test_batch_norm_gelu_kernel_in_inference(kernels):
    bn = randomized_bn(80).to(kernels).eval()
    x = torch.randn(2, 80, 3, 5, device=kernels)
    with torch.no_grad():
        out = batch_norm_gelu(bn, x.permute(0, 2, 3, 1))
        torch.testing.assert_close(out, F.gelu(bn(x)).permute(0, 2, 3, 1))
        out16 = batch_norm_gelu(bn, x.bfloat16().permute(0, 2, 3, 1))
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.float(), out, atol=0.05, rtol=0.02)


def test_block_with_kernels_equals_block_without(kernels):
    """A whole training step of a block, kernels on and the plain
    formulas."""
    torch.manual_seed(0)
    fast = SMLPBlock(16, (6, 6)).to(kernels)
    plain = SMLPBlock(16, (6, 6)).to(kernels)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(2, 6, 6, 16, device=kernels)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = fast(x1)
    with set_mode('plain'):
        want = plain(x2)
    torch.testing.assert_close(out, want)
    assert_same_gradients(out, want, [x1, *fast.parameters()],
                          [x2, *plain.parameters()])
    for (name, got), expected in zip(fast.named_buffers(), plain.buffers()):
        torch.testing.assert_close(got, expected, msg=name)



@pytest.mark.skipif(DEVICE == 'cpu', reason='bf16 tl.dot needs a GPU')
def test_eval_block_under_autocast_with_mix_kernels(default_mode,
                                                    monkeypatch):
    """Eager inference under bf16 autocast: the mix kernels take the fp32
    maps cast to bf16, as autocast casts torch.bmm's operands, and the
    block's output is the plain formulas' within bf16 rounding; where
    autograd records (an eval-mode block in a model that trains), torch.bmm,
    which has a backward."""
    launched = []
    monkeypatch.setattr(axial_mix_module, '_mix_fwd', _Recorder(
        axial_mix_module._mix_fwd, '_mix_fwd', launched))
    torch.manual_seed(0)
    block = SMLPBlock(64, (14, 14)).to(default_mode).eval()
    x = torch.randn(4, 14, 14, 64, device=default_mode)
    with torch.no_grad(), torch.autocast(default_mode, dtype=torch.bfloat16):
        out = block(x)
        assert launched == ['_mix_fwd'] * 2
        with set_mode('plain'):
            want = block(x)
    assert out.dtype == want.dtype
    torch.testing.assert_close(out.float(), want.float(), rtol=0,
                               atol=want.abs().max().item() / 64)
    with torch.autocast(default_mode, dtype=torch.bfloat16):
        block(x.clone().requires_grad_())
    assert launched == ['_mix_fwd'] * 2


def test_eval_sparse_mlp_on_the_kernel_route_adds_biases_in_the_mixes(
        default_mode, monkeypatch):
    """Eager 16-bit inference, where the mixes take the kernels: each mix
    adds its bias (the kernel in its pass; a mix too large for the kernels,
    here both, as baddbmm), and no bias table is added to the output; the
    same output as the table's form within bf16 rounding."""
    from mmsmlp.models.utils import sparse_mlp as sparse_mlp_module

    def no_table(*args):
        raise AssertionError('the bias table was added')

    torch.manual_seed(0)
    module = SparseMLP(channels=8, resolution=(6, 10)).to(default_mode)
    for p in module.parameters():  # biases too, and not tiny
        nn.init.normal_(p)
    x = torch.randn(2, 6, 10, 8, device=default_mode)
    with monkeypatch.context() as patch:
        patch.setattr(axial_mix_module, 'fits', lambda *args, **kw: False)
        patch.setattr(sparse_mlp_module, 'bias_table', no_table)
        with torch.no_grad(), torch.autocast(default_mode,
                                             dtype=torch.bfloat16):
            out = module.eval()(x)
    with set_mode('plain'):
        want = module(x)  # the mixes, then the bias table, in fp32
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), want, rtol=0,
                               atol=want.abs().max().item() / 64)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
@pytest.mark.parametrize('hidden', [24, 7])  # 7: masked columns
def test_channel_mlp_gelu_backward_kernel(kernels, dtype, hidden):
    """The channel MLP's backward with its GELU kernel (gelu(h), its
    gradient and fc1's bias gradient in one pass) against the same node
    without it (itself checked against the plain formula in
    test_fast_paths.py); rows that do not fill the last tile."""
    torch.manual_seed(0)
    mlp = ChannelMLP(8, hidden).to(kernels).train()
    plain = ChannelMLP(8, hidden).to(kernels)
    plain.load_state_dict(mlp.state_dict())
    x = torch.randn(3, 5, 7, 8, device=kernels) * 2
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    launched = []
    with torch.autocast(kernels, dtype=dtype, enabled=dtype != torch.float32):
        out = mlp(x1)
        with set_mode('no-triton'):
            want = plain(x2)
    assert out.grad_fn.__class__.__name__ == '_ChannelMLPFunctionBackward'
    kernel = channel_mlp_module._gelu_bwd
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(channel_mlp_module, '_gelu_bwd',
                      _Recorder(kernel, '_gelu_bwd', launched))
        grad = torch.randn_like(out)
        got = torch.autograd.grad(out, [x1, *mlp.parameters()], grad)
    assert launched == ['_gelu_bwd']
    expected = torch.autograd.grad(want, [x2, *plain.parameters()], grad)
    torch.testing.assert_close(out, want)
    for name, a, b in zip(['x', 'fc1.weight', 'fc1.bias', 'fc2.weight',
                           'fc2.bias'], got, expected):
        assert a.dtype == b.dtype, name
        # bf16: an erf a last bit apart may round a value the other way
        tol = {} if dtype == torch.float32 else dict(
            atol=b.abs().max().item() / 128, rtol=0)  # one bf16 step
        torch.testing.assert_close(a, b, **tol, msg=name)


# Axial mixes: sizes of sMLPNet's stages up to the kernels' limit, column
# counts that do not fill the last tile (K = 40, 7 * 9), powers of two
# (backward pads them to the next one, for its row of ones).
@pytest.mark.parametrize('B,S,K', [(3, 7, 40), (2, 14, 63), (2, 56, 16),
                                   (2, 16, 40), (1, 64, 8)])
@pytest.mark.parametrize('dtype', [
    torch.float32,
    # Triton's interpreter computes bf16 tl.dot wrongly (Triton 3.8)
    pytest.param(torch.bfloat16, marks=pytest.mark.skipif(
        DEVICE == 'cpu', reason='bf16 tl.dot needs a GPU'))
])
def test_axial_mix_kernels(kernels, B, S, K, dtype):
    """Forward ``w @ x[b]``, with and without a bias, and backward (grad_x
    accumulated in place, the weight and bias gradients summed over the
    batch, fp32) against the formulas in fp64 on the same inputs: fp32
    within fp32 rounding, bf16 outputs within one bf16 step of the largest
    value (accumulated in fp32, rounded once)."""
    assert axial_mix_module.fits(S, dtype, torch.device(kernels),
                                 backward=True)
    torch.manual_seed(0)
    w, x, grad, earlier = (
        torch.randn(shape, device=kernels).to(dtype)
        for shape in ((S, S), (B, S, K), (B, S, K), (B, S, K)))
    bias = torch.randn(S, device=kernels).to(dtype)
    w64, x64, grad64 = w.double(), x.double(), grad.double()

    def close(got, want):
        tol = {} if got.dtype == torch.float32 else dict(
            atol=want.abs().max().item() / 128, rtol=0)
        torch.testing.assert_close(got, want.to(got.dtype), **tol)

    close(axial_mix_module.axial_mix(w, x), w64 @ x64)
    close(axial_mix_module.axial_mix(w, x, bias),
          w64 @ x64 + bias.double()[:, None])
    grad_x = earlier.clone()
    dw, db = axial_mix_module.axial_mix_backward(w, grad, x, grad_x)
    assert dw.dtype == db.dtype == torch.float32 and grad_x.dtype == dtype
    close(dw, (grad64 @ x64.transpose(1, 2)).sum(0))
    close(db, grad64.sum((0, 2)))
    close(grad_x, earlier.double() + w64.t() @ grad64)


def test_axial_mix_tiles_fit_the_shared_memory():
    """Columns per tile: fewer where the tiles would not fit a block's
    shared memory, none (torch.bmm) where even 16 do not. fp32 at 64
    positions asked an H100 (232448 bytes a block) for 393216 bytes with
    128 columns in backward."""
    h100, a100, ada = 232448, 166912, 101376
    block_k = axial_mix_module.block_k
    assert block_k(64, 4, True, 393216) == 128  # the estimate: what it asked
    assert block_k(64, 4, True, 393216 - 1) == 64
    assert block_k(64, 4, True, h100) == 32
    assert block_k(64, 2, True, h100) == 128  # bf16: as before
    assert block_k(64, 2, True, a100) == 64
    assert block_k(64, 4, True, ada) is None
    assert block_k(56, 4, True, h100) == 128  # sMLPNet-T's largest at 224
    assert block_k(14, 2, False, ada) == 64  # up to 16 positions: 64
    assert block_k(64, 4, False, h100) == 128
    # on CPU (Triton's interpreter) the tiles are an H100's
    assert not axial_mix_module.fits(65, torch.float32, torch.device('cpu'))
    assert axial_mix_module._launch_sizes(
        torch.empty(1, 64, 8), backward=True)[2]['BLOCK_K'] == 32


@pytest.mark.parametrize('capturing', [False, True])
def test_sparse_mlp_with_mix_kernels(capturing, default_mode):
    """The sMLP with its mixes as kernels as a CUDA graph capture runs it
    (training; the capture flag needs no GPU), against the plain formulas,
    fp32; fp32 inference keeps torch.bmm (faster there; bf16 inference:
    the next test). At 5 x 80 positions one mix takes the kernel and the
    other torch.bmm."""
    torch.manual_seed(0)
    module = SparseMLP(channels=8, resolution=(5, 80)).to(default_mode)
    for p in module.parameters():  # biases too, and not tiny
        nn.init.normal_(p)
    x = torch.randn(2, 5, 80, 8, device=default_mode)
    launched = []
    with pytest.MonkeyPatch.context() as patch:
        for name in ('_mix_fwd', '_mix_bwd'):
            patch.setattr(axial_mix_module, name, _Recorder(
                getattr(axial_mix_module, name), name, launched))
        if capturing:
            x1 = x.clone().requires_grad_()
            with graph_capture():
                out = module(x1)
            assert (out.grad_fn.__class__.__name__ ==
                    '_SparseMLPFunctionBackward')
            grad = torch.randn_like(out)
            got = torch.autograd.grad(out, [x1, *module.parameters()], grad)
            assert launched == ['_mix_fwd', '_mix_bwd']  # height: 5; not 80
        else:
            with torch.no_grad():
                out = module.eval()(x)
            assert launched == []
    x2 = x.clone().requires_grad_()
    with set_mode('plain'):
        want = module(x2)
    # fp32, other summation orders: rounding of the largest terms (outputs
    # near zero are differences of large ones)
    torch.testing.assert_close(out, want, rtol=1e-5,
                               atol=1e-6 * want.abs().max().item())
    if capturing:
        expected = torch.autograd.grad(want, [x2, *module.parameters()],
                                       grad)
        for (name, _), a, b in zip([('x', 0), *module.named_parameters()],
                                   got, expected):
            # sums over the batch in another order: fp32 rounding of the
            # largest terms
            torch.testing.assert_close(
                a, b, atol=1e-6 * b.abs().max().item(), rtol=1e-5, msg=name)

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Training and inference through CUDA graphs (GraphedTraining,
GraphedInference, CUDAGraphHook) compute what eager runs compute.

The graph tests need CUDA (CUDA graphs exist only there) and run on the GPU
machine; on a CPU the module and the hook must leave training eager and
unchanged, which the CPU tests check."""
import contextlib
import copy
import logging
import warnings

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmpretrain.registry import MODELS

from mmsmlp.engine import CUDAGraphHook
from mmsmlp.models import SMLPNet
from mmsmlp.models.utils import fast_paths
from mmsmlp.engine.model_wrappers.flat_reduce_ddp import flat_buffer_of
from mmsmlp.models.utils.cuda_graph import (GraphedInference,
                                            GraphedTraining, _hooked,
                                            _in_parameters_layout,
                                            _ReplayedStep)
from mmsmlp.models.utils.fast_paths import graph_capture, set_mode

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason='CUDA graphs need a CUDA GPU')


def classifier(drop_path_rate=0.):
    return MODELS.build(
        dict(type='ImageClassifier',
             backbone=dict(type='SMLPNet',
                           arch=dict(embed_dims=16,
                                     depths=[1, 2, 2, 1],
                                     mlp_ratio=3),
                           img_size=64,
                           drop_path_rate=drop_path_rate),
             neck=dict(type='GlobalAveragePooling'),
             head=dict(type='LinearClsHead', num_classes=10, in_channels=128)))


def dense_backbone(img_size):
    """A small sMLPNet as the dense-task configs train it: every stage's
    output, frozen BatchNorm statistics."""
    return SMLPNet(arch=dict(embed_dims=16, depths=[1, 2, 2, 1],
                             mlp_ratio=3), img_size=img_size,
                   out_indices=(0, 1, 2, 3), norm_eval=True)


class FakeRunner:

    def __init__(self, model):
        self.model = model
        self.logger = MMLogger.get_instance('test_cuda_graph')
        self.records = []
        handler = logging.Handler()
        handler.emit = lambda record: self.records.append(record.msg)
        self.logger.addHandler(handler)


def test_graph_capture_turns_on_triton_in_training_in_default_mode():
    x = torch.zeros(2, 8)
    with set_mode('default', triton_on_cpu=True):
        assert not fast_paths.use_triton(x, backward=True)
        with graph_capture():
            assert fast_paths.use_triton(x, backward=True)
            assert fast_paths.use_triton(x, backward=False)
        assert not fast_paths.use_triton(x, backward=True)
    if fast_paths.triton is None:  # no Triton: never, whatever the mode
        return
    for mode in ('plain', 'no-triton'):
        with set_mode(mode, triton_on_cpu=True), graph_capture():
            assert not fast_paths.use_triton(x, backward=True)


def test_graphed_training_stays_eager_on_cpu():
    torch.manual_seed(0)
    model = classifier()
    reference = copy.deepcopy(model)
    graphed = GraphedTraining.wrap(model.backbone)
    assert GraphedTraining.wrap(model.backbone) is graphed  # idempotent
    x = torch.randn(2, 3, 64, 64)
    model.train()
    reference.train()
    out = model(x, mode='tensor')
    torch.testing.assert_close(out, reference(x, mode='tensor'))
    out.sum().backward()
    assert graphed.captures == 0 and not graphed.graphs
    GraphedTraining.unwrap(model.backbone)
    assert 'forward' not in vars(model.backbone)


def test_graphed_training_bookkeeping(monkeypatch):
    """Which training calls capture, replay or run eagerly (``min_calls``,
    ``max_graphs``, pending gradients, moved parameters), on a CPU: the
    capture replaced by a stand-in that runs the module (the real captures
    and replays are the GPU tests')."""
    def call_key(x):  # as for a CUDA tensor
        return ((tuple(x.shape), x.stride(), x.dtype, x.device,
                 x.requires_grad, None) if torch.is_grad_enabled() else None)

    monkeypatch.setattr(GraphedTraining, 'call_key', staticmethod(call_key))
    captured = []

    def capture(self, x, key):
        captured.append(key[0])
        if not self.graphs:  # the addresses the graphs read, as captured
            self.params = self.tensors = tuple(self.module.parameters())
            self.pointers = tuple(p.data_ptr() for p in self.params)
        # the outputs through a Python autograd Function, as a replay's
        return lambda x: _Replayed.apply(*self.eager_forward(x))

    monkeypatch.setattr(GraphedTraining, '_capture', capture)
    model = classifier().train()
    graphed = GraphedTraining.wrap(model.backbone, min_calls=2, max_graphs=2)

    def call(h, w=64):
        model.backbone(torch.randn(1, 3, h, w))[0].sum().backward()
        model.zero_grad(set_to_none=True)
        return graphed.replays, graphed.eager_calls

    assert call(64) == (0, 1)  # first call of a shape: eager
    assert call(64) == (1, 1) and captured == [(1, 3, 64, 64)]
    assert call(96) == (1, 2)
    assert call(96) == (2, 2) and len(captured) == 2
    assert call(32) == (2, 3)
    with pytest.warns(UserWarning, match='max_graphs=2'):
        assert call(32) == (2, 4)  # a third shape: eager, max_graphs
    assert call(64) == (3, 4) and len(captured) == 2
    # gradients pending (no zero_grad): eager, with a warning
    model.backbone(torch.randn(1, 3, 64, 64))[0].sum().backward()
    with pytest.warns(UserWarning, match='pending'):
        model.backbone(torch.randn(1, 3, 64, 64))
    assert graphed.eager_calls == 5
    model.zero_grad(set_to_none=True)
    # parameters in new memory: the graphs are dropped, shapes counted anew
    for p in model.backbone.parameters():
        p.data = p.data.clone()
    with pytest.warns(UserWarning, match='capturing again'):
        call(96)
    assert not graphed.graphs and list(graphed.calls.values()) == [1]
    call(96)
    assert captured[-1] == (1, 3, 96, 64) and len(graphed.graphs) == 1
    # a second forward before the first one's backward (two views a step;
    # the first one's outputs already reduced to a loss): eager, as a
    # replay would overwrite the activations that backward reads
    replays, eager_calls = graphed.replays, graphed.eager_calls
    loss = model.backbone(torch.randn(1, 3, 96, 64))[0].sum()
    with pytest.warns(UserWarning, match='before the backward'):
        loss = loss + model.backbone(torch.randn(1, 3, 96, 64))[0].sum()
    assert (graphed.replays, graphed.eager_calls) == (replays + 1,
                                                      eager_calls + 1)
    loss.backward()
    model.zero_grad(set_to_none=True)
    assert call(96) == (replays + 2, eager_calls + 1)
    # a replay's outputs dropped without a backward: nothing is pending
    model.backbone(torch.randn(1, 3, 96, 64))
    assert call(96) == (replays + 4, eager_calls + 1)


class _Replayed(torch.autograd.Function):
    """The identity as a Python autograd Function: the node a replay's
    outputs have (``make_graphed_callables``' Function)."""

    @staticmethod
    def forward(ctx, *outs):
        return tuple(o.clone() for o in outs)

    @staticmethod
    def backward(ctx, *grads):
        return grads


def test_hook_leaves_a_cpu_model_eager():
    model = classifier()
    runner = FakeRunner(model)
    CUDAGraphHook().before_train(runner)
    assert 'forward' not in vars(model.backbone)
    assert any('not CUDA' in m for m in runner.records)


def test_hook_refuses_unknown_training_options():
    with pytest.raises(KeyError, match=r"max_graphs and direct_grads, got "
                       r"\['max_graph'\]"):
        CUDAGraphHook(training=dict(max_graph=4))


def test_hook_names_the_missing_submodule():
    hook = CUDAGraphHook(modules=['backbone', 'encoder'])
    with pytest.raises(KeyError,
                       match=r"'encoder'.*'backbone', 'neck', "
                       r"'head'\]"):
        hook.before_train(FakeRunner(classifier()))


def test_hook_looks_inside_a_distributed_model():
    """Under DDP (a model wrapper) the hook graphs the wrapped model (here on
    a CPU: it says it stays eager)."""
    from mmengine.model import MMDistributedDataParallel

    model = classifier()
    wrapper = MMDistributedDataParallel.__new__(MMDistributedDataParallel)
    torch.nn.Module.__init__(wrapper)
    wrapper.module = model
    runner = FakeRunner(wrapper)
    CUDAGraphHook().before_train(runner)
    assert 'forward' not in vars(model.backbone)
    assert any('not CUDA' in m for m in runner.records)


def test_hook_leaves_a_module_with_syncbn_eager():
    """SyncBatchNorm's all-reduces are not captured: the module stays eager,
    saying why."""
    model = classifier()
    model.backbone = torch.nn.SyncBatchNorm.convert_sync_batchnorm(
        model.backbone)
    runner = FakeRunner(model)
    CUDAGraphHook().before_train(runner)
    assert 'forward' not in vars(model.backbone)
    assert any('SyncBatchNorm' in m for m in runner.records)


def test_hook_disabled_or_compiled_does_nothing():
    model = classifier()
    if torch.cuda.is_available():
        model.cuda()
    CUDAGraphHook(enabled=False).before_train(FakeRunner(model))
    assert 'forward' not in vars(model.backbone)
    model._forward_compiled = True  # what CompileForwardHook marks
    runner = FakeRunner(model)
    CUDAGraphHook().before_train(runner)
    assert 'forward' not in vars(model.backbone)
    assert any('compiled' in m for m in runner.records)


def test_graphed_inference_stays_eager_on_cpu_and_in_training():
    torch.manual_seed(0)
    model = classifier().eval()
    reference = copy.deepcopy(model)
    graphed = GraphedInference.wrap(model.backbone)
    assert GraphedInference.wrap(model.backbone) is graphed  # idempotent
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for _ in range(3):
            torch.testing.assert_close(model(x, mode='tensor'),
                                       reference(x, mode='tensor'))
    model.train()
    model(x, mode='tensor').sum().backward()
    assert graphed.captures == 0 and not graphed.calls
    GraphedInference.unwrap(model.backbone)
    assert 'forward' not in vars(model.backbone)


def test_graphed_inference_checks_its_arguments():
    with pytest.raises(ValueError, match='min_calls >= 1'):
        GraphedInference(classifier().backbone, min_calls=0)
    with pytest.raises(TypeError, match='inference must be a bool or a dict'):
        CUDAGraphHook(inference='yes')


@pytest.mark.parametrize('training_first', [True, False])
def test_training_and_inference_wrappers_chain_in_either_order(
        training_first):
    """The hook installs GraphedTraining before training and
    GraphedInference before validation or testing: either order gives one
    of each around the module's own forward; each unwraps alone, and a deep
    copy (mmengine's EMA model) gets its own chain, uncaptured."""
    model = classifier()
    backbone = model.backbone
    order = ((GraphedTraining, GraphedInference) if training_first else
             (GraphedInference, GraphedTraining))
    first, second = (cls.wrap(backbone) for cls in order)
    assert vars(backbone)['forward'] is second
    assert second.eager_forward is first
    assert order[1].wrap(backbone) is second
    assert order[0].wrap(backbone) is first  # found inside the chain
    copied = copy.deepcopy(model).backbone
    outer = vars(copied)['forward']
    assert type(outer) is order[1] and outer.module is copied
    assert type(outer.eager_forward) is order[0]
    assert outer.eager_forward.eager_forward.__self__ is copied
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for m in (model.train(), model.eval()):
            torch.testing.assert_close(m.backbone(x)[0],
                                       type(backbone).forward(backbone, x)[0])
    order[0].unwrap(backbone)  # the inner one
    assert vars(backbone)['forward'] is second
    assert second.eager_forward.__self__ is backbone
    order[1].unwrap(backbone)
    assert 'forward' not in vars(backbone)
    first, second = (cls.wrap(backbone) for cls in order)
    order[1].unwrap(backbone)  # the outer one
    assert vars(backbone)['forward'] is first


@pytest.mark.parametrize('inference', [True, dict(min_calls=3)])
def test_hook_graphs_inference_only_when_asked(inference):
    model = classifier()
    hook = CUDAGraphHook()
    hook.before_val(FakeRunner(model))
    hook.before_test(FakeRunner(model))
    assert 'forward' not in vars(model.backbone)
    if not torch.cuda.is_available():
        runner = FakeRunner(model)
        CUDAGraphHook(inference=inference).before_test(runner)
        assert 'forward' not in vars(model.backbone)
        assert any('not CUDA' in m for m in runner.records)
        return
    model.cuda()
    runner = FakeRunner(model)
    hook = CUDAGraphHook(inference=inference)
    hook.before_test(runner)
    hook.before_val(runner)  # idempotent
    graphed = vars(model.backbone)['forward']
    assert isinstance(graphed, GraphedInference)
    assert graphed.min_calls == (3 if isinstance(inference, dict) else 2)
    assert graphed.eager_forward.__self__ is model.backbone
    assert sum('evaluate through CUDA graphs' in m
               for m in runner.records) == 1


def test_hook_looks_inside_a_tta_model():
    """``tools/test.py --tta`` wraps the model in a TTA model (mmseg's
    SegTTAModel): the hook finds the backbone inside it (here on a CPU: it
    says it stays eager) instead of stopping the test."""
    from mmengine.model import BaseTTAModel

    class TTA(BaseTTAModel):

        def merge_preds(self, data_samples_list):
            return data_samples_list[0]

    model = classifier()
    runner = FakeRunner(TTA(module=model))
    hook = CUDAGraphHook(inference=True)
    hook.before_test(runner)
    hook.after_test(runner)
    assert any('not CUDA' in m for m in runner.records)


def test_hook_releases_the_inference_graphs_after_val_and_test():
    """The graphs' memory goes back to training after each validation (a
    CPU model here: the release clears what the wrapper counted)."""
    model = classifier()
    graphed = GraphedInference.wrap(model.backbone)
    GraphedTraining.wrap(model.backbone)  # in the chain too
    hook = CUDAGraphHook(inference=True)
    for after in (hook.after_val, hook.after_test):
        graphed.calls[('a shape', )] = 1
        after(FakeRunner(model))
        assert not graphed.calls


def _step(model, x, y, autocast_dtype):
    with torch.autocast('cuda',
                        dtype=autocast_dtype or torch.float32,
                        enabled=autocast_dtype is not None):
        out = model(x, mode='tensor')
    loss = F.cross_entropy(out.float(), y)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = None
    return out.detach().float(), grads


@needs_cuda
@pytest.mark.parametrize('grads', ['direct', 'autograd', 'aliases'])
@pytest.mark.parametrize('autocast_dtype', [None, torch.bfloat16])
def test_graphed_backbone_equals_eager(autocast_dtype, grads):
    """Three training steps (outputs, every gradient, BatchNorm statistics
    after them) of the graphed backbone against the eager one running the
    forms a capture takes (``graph_capture``: its Triton kernels and its
    autograd nodes, which round differently from the eager ones; those
    are checked against the plain formulas on CPU), so equal to the
    rounding of a replay, whichever way the gradients reach the parameters
    (set by the replay, through autograd, through autograd to aliases). A
    batch of another size runs eagerly; capturing changes no statistic."""
    torch.manual_seed(0)
    eager = classifier().cuda().train()
    graphed_model = copy.deepcopy(eager)
    graphed = GraphedTraining.wrap(graphed_model.backbone,
                                   alias_parameters=grads == 'aliases',
                                   direct_grads=grads == 'direct')
    x = torch.randn(4, 3, 64, 64, device='cuda')
    y = torch.randint(0, 10, (4, ), device='cuda')
    tol = dict(atol=2e-2, rtol=2e-2) if autocast_dtype else dict(atol=2e-4,
                                                                 rtol=2e-4)
    for step in range(3):
        xs = x + step  # a new input each step
        with graph_capture():
            out_e, grads_e = _step(eager, xs, y, autocast_dtype)
        out_g, grads_g = _step(graphed_model, xs, y, autocast_dtype)
        torch.testing.assert_close(out_g, out_e, **tol)
        for (name, _), a, b in zip(eager.named_parameters(), grads_g, grads_e):
            torch.testing.assert_close(a, b, **tol, msg=name)
    assert graphed.captures == 1
    for (name, a), b in zip(eager.named_buffers(), graphed_model.buffers()):
        if a.is_floating_point():
            torch.testing.assert_close(b, a, **tol, msg=name)
        else:  # num_batches_tracked: 3 steps, none for the capture
            assert torch.equal(a, b), name
    # another batch size: eager, with a warning; the same values
    with pytest.warns(UserWarning, match='another form'):
        out_g, _ = _step(graphed_model, x[:2], y[:2], autocast_dtype)
    out_e, _ = _step(eager, x[:2], y[:2], autocast_dtype)
    torch.testing.assert_close(out_g, out_e, **tol)
    # eval mode: the module's own forward
    graphed_model.eval()
    eager.eval()
    with torch.no_grad():
        torch.testing.assert_close(graphed_model(x, mode='tensor'),
                                   eager(x, mode='tensor'), **tol)


def test_hooked_parameters_are_found():
    """The parameters whose gradients must go through autograd (its hooks
    run there): a tensor hook, a post-accumulate-grad hook."""
    model = classifier()
    params = tuple(model.parameters())
    assert not _hooked(params)
    handle = params[3].register_hook(lambda g: g)
    assert _hooked(params)
    handle.remove()
    assert not _hooked(params)
    params[5].register_post_accumulate_grad_hook(lambda p: None)
    assert _hooked(params)


def test_replayed_gradients_fill_one_buffer_in_the_parameters_layout():
    """What the backward graph's last op makes of its gradients: copies, in
    one buffer that FlatReduceDDP recognises, each in its parameter's
    layout; a missing gradient or mixed dtypes keep one tensor each."""
    params = (torch.randn(4, 3, 3, 3).to(memory_format=torch.channels_last),
              torch.randn(4), torch.randn(5, 4))
    grads = tuple(torch.randn(p.shape) for p in params)  # contiguous
    apart = _in_parameters_layout(params, grads, False)  # a tensor each
    for grad, kept, param in zip(grads, apart, params):
        assert kept.stride() == param.stride() and torch.equal(kept, grad)
    assert flat_buffer_of(apart) is None
    views = _in_parameters_layout(params, grads, True)
    for view, grad, param in zip(views, grads, params):
        assert view.stride() == param.stride()
        assert torch.equal(view, grad)
    assert flat_buffer_of(views).numel() == sum(p.numel() for p in params)
    apart = _in_parameters_layout(params, (None, ) + grads[1:], True)
    assert apart[0] is None and flat_buffer_of(apart[1:]) is None
    assert apart[2] is grads[2] and apart[1] is grads[1]
    assert apart[1].stride() == params[1].stride()
    mixed = (params[0], params[1].double())
    kept = _in_parameters_layout(mixed, (grads[0], grads[1].double()),
                                 True)
    assert kept[0].stride() == params[0].stride()
    assert flat_buffer_of(kept) is None


def test_a_hook_added_after_a_direct_capture_is_noticed():
    """A gradient hook added to a parameter after a capture whose replay
    sets the gradients itself (which would skip it) is noticed before the
    next replay (the call then captures again through autograd: the CUDA
    test below); one whose gradients go through autograd runs it as is."""
    model = classifier()
    graphed = GraphedTraining.wrap(model.backbone)
    graphed.params = tuple(model.backbone.parameters())  # as at a capture
    graphed.graphs[('key', )] = object.__new__(_ReplayedStep)
    assert not graphed._hooked_since_capture()
    graphed.params[2].register_hook(lambda g: g)
    assert graphed._hooked_since_capture()
    graphed.graphs[('key', )] = lambda x: x  # make_graphed_callables' form
    assert not graphed._hooked_since_capture()
    graphed.release()
    assert not graphed._hooked_since_capture()


@needs_cuda
@pytest.mark.parametrize('direct_grads', [True, False])
def test_graphed_gradients_in_the_parameters_layout(direct_grads):
    """channels_last weights (``ChannelsLastHook``) and a fused AdamW, as
    the ImageNet configs train: the replay's gradients have their
    parameters' strides (the fused kernel pairs elements in memory order),
    set directly (no autograd node of a parameter runs: a hook on the
    accumulator of one would) or through autograd, and two steps update
    the parameters as eager steps do. A parameter with a tensor hook takes
    the autograd route, and its hook runs."""
    torch.manual_seed(0)
    eager = classifier().cuda().train().to(memory_format=torch.channels_last)
    graphed_model = copy.deepcopy(eager)
    graphed = GraphedTraining.wrap(graphed_model.backbone,
                                   direct_grads=direct_grads)
    x = torch.randn(4, 3, 64, 64, device='cuda').contiguous(
        memory_format=torch.channels_last)
    y = torch.randint(0, 10, (4, ), device='cuda')
    weight = graphed_model.backbone.downsample_layers[1].weight
    assert weight.stride(1) == 1  # channels_last
    ran = []
    optimizers = [torch.optim.AdamW(m.parameters(), lr=1e-3, fused=True)
                  for m in (eager, graphed_model)]
    for step in range(2):
        if step == 1:
            # after the capture: an accumulator made before it, here on the
            # default stream, would break any capture (as DDP's do: its
            # route is alias_parameters)
            accumulator = weight.view_as(weight).grad_fn.next_functions[0][0]
            accumulator.register_hook(lambda *_: ran.append(1))
        for model, opt in zip((eager, graphed_model), optimizers):
            with graph_capture() if model is eager else \
                    contextlib.nullcontext():
                F.cross_entropy(model(x + step, mode='tensor'), y).backward()
            if model is graphed_model:
                for name, p in model.named_parameters():
                    assert p.grad.stride() == p.stride(), name
            opt.step()
            opt.zero_grad(set_to_none=True)
        for (name, a), b in zip(eager.named_parameters(),
                                graphed_model.parameters()):
            torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4, msg=name)
    assert graphed.replays == 2
    assert bool(ran) is not direct_grads
    del accumulator
    # a hook on a parameter after the capture: each replay runs it. A graph
    # that set the gradients directly is captured again, through autograd
    # (its warm-ups and capture run the hook too), with a warning.
    seen = []
    weight.register_hook(lambda g: seen.append(g.shape))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        _step(graphed_model, x, y, None)
    captured = len(seen)
    _step(graphed_model, x, y, None)
    assert captured >= 1 and len(seen) == captured + 1
    assert graphed.captures == (2 if direct_grads else 1)
    assert any('gradient hook after the capture' in str(w.message)
               for w in caught) is direct_grads


@needs_cuda
def test_graphed_training_keeps_a_graph_per_shape():
    """``min_calls``/``max_graphs`` (the Mask R-CNN configs: batches of
    varying shapes, frozen BatchNorm statistics, fp16 autocast): a shape is
    captured at its second call, at most two shapes are kept, the rest run
    eagerly, and every call computes what eager computes (outputs and
    gradients)."""
    torch.manual_seed(0)
    eager = dense_backbone(img_size=64).cuda().train()
    graphed_model = copy.deepcopy(eager)
    graphed = GraphedTraining.wrap(graphed_model, min_calls=2, max_graphs=2)
    sizes = [(64, 96), (64, 96), (96, 64), (64, 96), (96, 64), (96, 64),
             (32, 64), (32, 64), (64, 96)]
    tol = dict(atol=2e-2, rtol=2e-2)
    for step, size in enumerate(sizes):
        x = torch.randn(2, 3, *size, device='cuda')
        runs = []
        for model, capture_forms in ((eager, True), (graphed_model, False)):
            with torch.autocast('cuda', dtype=torch.float16), (
                    graph_capture() if capture_forms else
                    contextlib.nullcontext()):
                outs = model(x)
            sum(o.float().square().mean() for o in outs).backward()
            runs.append(([o.detach().float() for o in outs],
                         [p.grad.float() for p in model.parameters()]))
            model.zero_grad(set_to_none=True)
        (outs_e, grads_e), (outs_g, grads_g) = runs
        for a, b in zip(outs_g, outs_e):
            torch.testing.assert_close(a, b, **tol)
        for (name, _), a, b in zip(eager.named_parameters(), grads_g,
                                   grads_e):
            torch.testing.assert_close(a, b, **tol, msg=f'{step} {name}')
    assert graphed.captures == 2 and len(graphed.graphs) == 2
    # (64, 96) and (96, 64) from their second calls on; (32, 64) eagerly
    assert graphed.replays == 3 + 2 and graphed.eager_calls == 4
    # the graphs' pool: reserved memory, which the allocated figure that
    # mmengine logs does not count
    reserved = graphed.pool_bytes()
    assert 0 < reserved <= torch.cuda.memory_reserved()
    runner = FakeRunner(torch.nn.ModuleDict(dict(backbone=graphed_model)))
    CUDAGraphHook().after_train_epoch(runner)
    assert runner.records == [
        'CUDAGraphHook: backbone: 5 of 9 training calls so far replayed '
        'from CUDA graphs (2 shapes captured, at most 2; their memory pool: '
        f'{reserved / 2**20:.0f} MB)']
    with pytest.raises(ValueError, match='max_graphs >= 1'):
        GraphedTraining(eager, max_graphs=0)



@needs_cuda
def test_graphed_training_two_forwards_before_a_backward_equal_eager():
    """Two forwards and then one backward (two views a step): the second
    forward runs eagerly, of the same shape as the first replay's or of
    another graph's (the graphs share their activations' memory), and the
    gradients are eager's."""
    torch.manual_seed(0)
    eager = dense_backbone(img_size=64).cuda().train()
    graphed_model = copy.deepcopy(eager)
    graphed = GraphedTraining.wrap(graphed_model, max_graphs=2)
    first = torch.randn(2, 3, 64, 96, device='cuda')
    for second_size in ((64, 96), (96, 64), (96, 64)):
        second = torch.randn(2, 3, *second_size, device='cuda')
        grads = []
        for model, capture_forms in ((eager, True), (graphed_model, False)):
            with (graph_capture() if capture_forms else
                  contextlib.nullcontext()):
                # the first forward's outputs reduced before the second
                loss = sum(o.square().mean() for o in model(first))
                loss = loss + sum(o.square().mean() for o in model(second))
            loss.backward()
            grads.append([p.grad for p in model.parameters()])
            model.zero_grad(set_to_none=True)
        for (name, _), a, b in zip(eager.named_parameters(), *grads[::-1]):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4,
                                       msg=f'{second_size} {name}')
        # captures: the first form at its first call, the second one at
        # its first call as the first forward of a step (below)
        graphed_model(second)[0].sum().backward()
        graphed_model.zero_grad(set_to_none=True)
    assert graphed.captures == 2 and graphed.pool is not None
    # the first forward of each step replayed, the second ran eagerly
    assert graphed.eager_calls == 3

@needs_cuda
def test_graphed_backbone_as_upernet_trains_it_in_fp16():
    """The UperNet configs' backbone (every stage's output, frozen
    BatchNorm statistics) trained as mmengine's AmpOptimWrapper does (fp16
    autocast, a GradScaler, AdamW), graphed against eager running the
    capture forms: the setting in which tools/train.py stopped with a CUDA
    illegal memory access on an H200 (2026-12-01, docs/segmentation.md);
    this test had not run on a GPU then. The trigger: a replay after
    ``torch.cuda.empty_cache()`` (which cuDNN's autotuner calls for the
    eager head's new shapes) while the captured sMLP's backward had fp32
    matrix-vector products: so the graphed run empties the cache between
    its forward and backward, and after each step."""
    torch.manual_seed(0)
    eager = dense_backbone(img_size=128).cuda().train()
    graphed_model = copy.deepcopy(eager)
    graphed = GraphedTraining.wrap(graphed_model)
    runs = [(model, capture_forms, torch.optim.AdamW(model.parameters()),
             torch.amp.GradScaler('cuda'))
            for model, capture_forms in ((eager, True),
                                         (graphed_model, False))]
    x = torch.randn(2, 3, 128, 128, device='cuda')
    for step in range(3):
        outputs = []
        for model, capture_forms, optimizer, scaler in runs:
            with torch.autocast('cuda', dtype=torch.float16), (
                    graph_capture() if capture_forms else
                    contextlib.nullcontext()):
                outs = model(x + step)
            if not capture_forms:
                torch.cuda.empty_cache()
            loss = sum(o.float().square().mean() for o in outs)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
            outputs.append([o.detach().float() for o in outs])
        for a, b in zip(outputs[1], outputs[0]):
            torch.testing.assert_close(a, b, atol=2e-2, rtol=2e-2)
    for (name, a), b in zip(eager.named_parameters(),
                            graphed_model.parameters()):
        torch.testing.assert_close(b, a, atol=2e-2, rtol=2e-2, msg=name)
    assert graphed.captures == 1


@needs_cuda
def test_graphed_tiny_at_512_survives_emptying_the_cache():
    """sMLPNet-T as the UperNet-T config trains it (512x512, every stage's
    output, frozen BatchNorm statistics, drop path 0.3; fp16 autocast, a
    GradScaler, AdamW), graphed, with ``torch.cuda.empty_cache()`` between
    the replayed forward and backward and after each step. Before the
    captured sMLP's bias products were written as multiply-and-sum, this
    stopped with a CUDA illegal memory access on an H200 (2026-12-02)."""
    torch.manual_seed(0)
    model = SMLPNet(arch='tiny', img_size=512, out_indices=(0, 1, 2, 3),
                    drop_path_rate=0.3, norm_eval=True).cuda().train()
    graphed = GraphedTraining.wrap(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler('cuda')
    for step in range(3):
        x = torch.randn(2, 3, 512, 512, device='cuda')
        with torch.autocast('cuda', dtype=torch.float16):
            outs = model(x)
        torch.cuda.empty_cache()
        loss = sum(o.float().mean() for o in outs)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.empty_cache()
        assert torch.isfinite(loss).item(), step
    assert graphed.captures == 1


@needs_cuda
def test_graphed_drop_path_follows_the_seed():
    """Drop path inside the graph: the generator's seed sets its draws (a
    resumed run repeats an unbroken one), capturing consumes none, and
    consecutive steps draw differently."""
    torch.manual_seed(0)
    model = classifier(drop_path_rate=0.5).cuda().train()
    GraphedTraining.wrap(model.backbone)
    x = torch.randn(4, 3, 64, 64, device='cuda')

    def forward():
        return model.backbone(x)[0].detach().clone()

    torch.cuda.manual_seed(1)
    before = torch.cuda.get_rng_state()
    first = forward()  # captures, then replays
    torch.cuda.manual_seed(1)
    assert torch.equal(forward(), first)
    second = forward()
    assert not torch.equal(second, first)
    torch.cuda.set_rng_state(before)
    assert torch.equal(forward(), first)


@needs_cuda
def test_graphed_training_captures_again_after_a_move_and_skips_pending_grads(
):
    torch.manual_seed(0)
    model = classifier().cuda().train()
    graphed = GraphedTraining.wrap(model.backbone)
    x = torch.randn(4, 3, 64, 64, device='cuda')
    y = torch.randint(0, 10, (4, ), device='cuda')
    _step(model, x, y, None)
    model.cpu().cuda()  # new memory for every parameter
    with pytest.warns(UserWarning, match='capturing again'):
        _step(model, x, y, None)
    assert graphed.captures == 2
    # gradients accumulated over iterations (no zero_grad): the first
    # replays, later ones run eagerly; the sums are eager's
    reference = copy.deepcopy(model)
    GraphedTraining.unwrap(reference.backbone)
    for m in (model, reference):
        for p in m.parameters():
            p.grad = None
        F.cross_entropy(m(x, mode='tensor'), y).backward()
    with pytest.warns(UserWarning, match='pending'):
        F.cross_entropy(model(x, mode='tensor'), y).backward()
    F.cross_entropy(reference(x, mode='tensor'), y).backward()
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(a.grad,
                                   b.grad,
                                   atol=1e-4,
                                   rtol=1e-4,
                                   msg=name)


def _eval_outputs(model, x):
    with torch.no_grad():
        return [o.clone() for o in model(x)]


@needs_cuda
@pytest.mark.parametrize('autocast_dtype', [None, torch.float16])
def test_graphed_inference_equals_eager(autocast_dtype):
    """The UperNet configs' backbone in eval mode (every stage's output),
    its forward replayed from graphs against the module's own: a shape is
    captured at its second call; sliding windows (views of a larger image)
    share one graph; a replay follows weights changed in place (an EMA
    swap writes through ``.data``, which no version counter sees), after
    ``torch.cuda.empty_cache()`` too; outputs are copies; a move captures
    again; beyond ``max_graphs`` shapes run eagerly."""
    torch.manual_seed(0)
    model = dense_backbone(img_size=128).cuda().eval()
    reference = copy.deepcopy(model)
    graphed = GraphedInference.wrap(model, max_graphs=2)
    tol = (dict(atol=1e-2, rtol=1e-2) if autocast_dtype else
           dict(atol=1e-4, rtol=1e-4))
    autocast = torch.autocast('cuda', dtype=autocast_dtype or torch.float32,
                              enabled=autocast_dtype is not None)

    def check(x):
        with autocast:
            outs = _eval_outputs(model, x)
            expected = _eval_outputs(reference, x)
        for a, b in zip(outs, expected):
            torch.testing.assert_close(a, b, **tol)
        return outs

    image = torch.randn(1, 3, 128, 171, device='cuda')
    windows = [image[..., :128, :128], image[..., :128, 43:]]
    check(windows[0])  # first call: eager
    assert graphed.captures == 0
    first = check(windows[1])  # captured, replayed
    kept = [o.clone() for o in first]
    assert graphed.captures == 1 and graphed.replays == 1
    check(windows[0])  # the other window, same graph
    for a, b in zip(first, kept):  # the earlier outputs are untouched
        assert torch.equal(a, b)
    for p, q in zip(model.parameters(), reference.parameters()):
        p.data.mul_(0.9)  # .data: no version bump
        q.data.mul_(0.9)
    for b, c in zip(model.buffers(), reference.buffers()):
        if b.is_floating_point():
            b.data.add_(0.1)
            c.data.add_(0.1)
    torch.cuda.empty_cache()
    check(windows[1])
    assert graphed.replays == 3 and graphed.captures == 1
    model.cpu().cuda()  # new memory: captured again at its second call
    check(windows[0])
    check(windows[1])
    assert graphed.captures == 2
    for size in (64, 96):  # a second shape fills max_graphs; a third: eager
        for _ in range(3):
            check(torch.randn(2, 3, size, size, device='cuda'))
    assert graphed.captures == 3 and len(graphed.graphs) == 2
    with torch.enable_grad():  # autograd recording: eager
        model(windows[0])
    assert graphed.replays == 3 + 1 + 2
    graphed.release()  # CUDAGraphHook's after_val: captured anew
    assert not graphed.graphs and not graphed.calls
    for _ in range(2):
        check(windows[0])
    assert graphed.captures == 4 and graphed.replays == 7


def test_a_copied_module_gets_its_own_wrapper():
    torch.manual_seed(0)
    model = classifier().eval()
    graphed = GraphedTraining.wrap(model.backbone)
    copied = copy.deepcopy(model)
    wrapper = vars(copied.backbone)['forward']
    assert isinstance(wrapper, GraphedTraining) and wrapper is not graphed
    assert wrapper.module is copied.backbone and not wrapper.graphs
    assert wrapper.eager_forward.__self__ is copied.backbone
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(copied(x, mode='tensor'),
                                   model(x, mode='tensor'))
        copied.backbone.norm3.bias.add_(1)  # the copy's own weights run
        assert not torch.allclose(
            copied.backbone(x)[0], model.backbone(x)[0], atol=0.5)


@pytest.mark.parametrize('config, index, hook', [
    ('smlpnet/smlpnet-t_8xb128_in1k.py', 3, dict(type='CUDAGraphHook')),
    ('smlpnet/smlpnet-s_8xb128_in1k.py', 3, dict(type='CUDAGraphHook')),
    ('smlpnet/smlpnet-b_8xb128_in1k.py', 3, dict(type='CUDAGraphHook')),
    ('mask_rcnn/mask-rcnn_smlpnet-t_fpn_1x_coco.py', 2,
     dict(type='CUDAGraphHook', training=dict(min_calls=2, max_graphs=8))),
    ('mask_rcnn/mask-rcnn_smlpnet-t_fpn_ms-crop-3x_coco.py', 2,
     dict(type='CUDAGraphHook', training=dict(min_calls=2, max_graphs=8))),
    ('upernet/smlpnet-t_upernet_8xb2-160k_ade20k-512x512.py', 2,
     dict(type='CUDAGraphHook', inference=True)),
    ('upernet/smlpnet-b_upernet_8xb2-160k_ade20k-512x512.py', 2,
     dict(type='CUDAGraphHook', inference=True)),
])
def test_configs_list_the_graph_hook(config, index, hook):
    """The configs list CUDAGraphHook at the index the docs name for
    turning it off or on (README: ``custom_hooks.3.enabled=False``); those
    of batches of varying shape (Mask R-CNN) keep a graph per shape."""
    from mmengine.config import Config

    from .conftest import REPO_ROOT
    cfg = Config.fromfile(f'{REPO_ROOT}/configs/{config}')
    assert cfg.custom_hooks[index] == hook
    if 'in1k' in config:  # fixed-size batches: no last, smaller one
        assert cfg.train_dataloader.drop_last is True
    enabled = not hook.get('enabled', True)
    cfg.merge_from_dict({f'custom_hooks.{index}.enabled': enabled})
    assert cfg.custom_hooks[index].enabled is enabled


@pytest.fixture
def nccl_of_one(tmp_path):
    """A process group of this process alone, on its GPU."""
    import torch.distributed as dist
    dist.init_process_group('nccl',
                            init_method=f'file://{tmp_path}/rendezvous',
                            rank=0,
                            world_size=1)
    yield
    dist.destroy_process_group()


def assert_wrapped_models_train_alike(eager, models, steps=3):
    """Each of ``models`` (DDP wrappers, the first of ``eager``) gives the
    same gradients for ``steps`` steps."""
    x = torch.randn(4, 3, 64, 64, device='cuda')
    y = torch.randint(0, 10, (4, ), device='cuda')
    for step in range(steps):
        grads = []
        for ddp in models:
            F.cross_entropy(ddp(x + step, mode='tensor'), y).backward()
            grads.append([p.grad.clone() for p in ddp.parameters()])
            ddp.zero_grad(set_to_none=True)
        for (name, _), a, b in zip(eager.named_parameters(), *grads):
            torch.testing.assert_close(a, b, atol=2e-4, rtol=2e-4, msg=name)


@needs_cuda
def test_graphed_backbone_under_flat_reduce_ddp_equals_eager(nccl_of_one):
    """Under FlatReduceDDP (one process, one GPU) the hook's replay sets the
    backbone's gradients itself, in one buffer, which the wrapper
    all-reduces as it is: it trains as the eager model under plain DDP."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from mmsmlp.engine import FlatReduceDDP

    torch.manual_seed(0)
    eager = classifier().cuda().train()
    graphed_model = copy.deepcopy(eager)
    device = [torch.cuda.current_device()]
    models = (DDP(eager, device_ids=device),
              FlatReduceDDP(graphed_model, device_ids=device))
    CUDAGraphHook().before_train(FakeRunner(models[1]))
    graphed = vars(graphed_model.backbone)['forward']
    assert not graphed.alias_parameters and graphed.direct_grads
    assert graphed.one_grad_buffer
    assert_wrapped_models_train_alike(eager, models)
    assert (graphed.captures, graphed.replays) == (1, 3)
    # the replay's buffer was reduced as it is, not packed
    step = graphed.graphs[next(iter(graphed.graphs))]
    assert models[1]._packed_flat.data_ptr() == \
        step.param_grads[0].data_ptr()


@needs_cuda
def test_graphed_backbone_under_ddp_equals_eager(nccl_of_one):
    """DDP (one process, one GPU: DDP's gradient accumulators live on the
    default stream, as with several GPUs): the hook's capture with aliases
    of the parameters trains as the eager DDP model does."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(0)
    eager = classifier().cuda().train()
    graphed_model = copy.deepcopy(eager)
    GraphedTraining.wrap(graphed_model.backbone, alias_parameters=True)
    models = [
        DDP(m, device_ids=[torch.cuda.current_device()])
        for m in (eager, graphed_model)
    ]
    assert_wrapped_models_train_alike(eager, models)
    assert vars(graphed_model.backbone)['forward'].captures == 1

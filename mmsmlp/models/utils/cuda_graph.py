# Copyright (c) mmsmlp contributors. All rights reserved.
"""A module's training forward and backward replayed as CUDA graphs.

An eager training step of sMLPNet is bound by the host issuing its
kernels (about 4,000 ATen ops a step; docs/benchmarks.md), not by the GPU.
A CUDA graph replays a captured forward (and, through autograd, backward)
with one launch each, so the step costs what its kernels cost.
:class:`GraphedTraining` wraps PyTorch's
:func:`torch.cuda.make_graphed_callables` for a training loop that does not
know about it (mmengine's Runner, mmdet's and mmseg's):

- it captures at the first training call on a CUDA tensor, with that call's
  input as the sample (shape, dtype, memory layout, autocast dtype), and
  replays for every later call that matches it; with ``max_graphs`` > 1 it
  keeps a graph for each input shape seen ``min_calls`` times, up to
  ``max_graphs`` shapes (mmdet's batches, whose size follows their
  images'); any other call (other shapes, eval mode, no grad,
  torch.compile, a CPU tensor) runs the module's own forward;
- what capturing runs (PyTorch's warm-up iterations and the capture itself)
  leaves no trace: BatchNorm statistics and the CUDA random generator are
  restored after it, so the run computes what an eager run computes (drop
  path draws different random numbers inside a graph, as a different
  kernel would; they follow the generator's seed, so a resumed run repeats
  an unbroken one);
- it checks before each replay that the module's parameters and buffers
  still where they were captured (a graph reads fixed addresses: after
  ``model.to()`` or ``.cuda()`` gives them new memory, it captures again;
  assigning new Parameter objects to the module is not supported) and that no
  gradient is pending in them (a replay writes the gradients into the same
  buffers each time, so accumulating over iterations without
  ``zero_grad(set_to_none=True)`` would double-count: such a call runs
  eagerly instead), nor the backward of an earlier replay (a second forward
  before the backward, as in two-view training: a replay overwrites the
  activations that backward reads);
- the replay's backward writes the parameters' gradients itself
  (``direct_grads``, :class:`_ReplayedStep`): through autograd, as
  ``make_graphed_callables`` returns them, each of sMLPNet-T's 424
  parameters costs an ``AccumulateGrad`` node and a stream event, about
  9 ms of host time a step (H100, 2026-12-05; docs/benchmarks.md), more
  than the replay itself (under ``FlatReduceDDP``, into one buffer, which
  it all-reduces as it is). Under plain DDP (``alias_parameters``) or with
  hooks on a parameter they go through autograd, which runs the hooks;
- a module's graphs share one memory pool: each replay's forward and
  backward use the same scratch memory, as the previous check keeps one
  replay's forward and backward from interleaving with another's, so the
  graphs together hold about as much as the largest one.

Inside the capture, mmsmlp's Triton kernels run in training too
(:func:`.fast_paths.graph_capture`): their kernels are faster than
PyTorch's and, replayed, their host cost is gone.
"""
import copy
import warnings
import weakref
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from .fast_paths import get_mode, graph_capture, is_eager


class _ForwardWrapper:
    """What :class:`GraphedTraining` and :class:`GraphedInference` share:
    each replaces ``module.forward``, around whatever forward was there
    (``eager_forward``: the class's, or the other wrapper), and checks the
    addresses its graphs read."""

    def _arguments(self) -> dict:
        """The constructor's arguments besides the module."""
        raise NotImplementedError

    def __deepcopy__(self, memo):
        # A deep copy of the module (mmengine's EMA model, copy.deepcopy of
        # a model) gets a wrapper of its own, uncaptured: graphs and their
        # memory are not copied.
        module = memo.get(id(self.module))
        if module is None:
            raise TypeError(
                f'copy the module, not its {type(self).__name__}')
        copied = type(self)(module, **self._arguments())
        copied.eager_forward = copy.deepcopy(self.eager_forward, memo)
        return copied

    @classmethod
    def wrap(cls, module: nn.Module, **kwargs):
        """Install one around ``module.forward`` (or return the one in its
        chain)."""
        found = find_wrapper(cls, module)
        if found is not None:
            return found
        wrapper = cls(module, **kwargs)
        module.forward = wrapper
        return wrapper

    @classmethod
    def unwrap(cls, module: nn.Module) -> None:
        """Take it out of ``module.forward``'s chain (its graphs and their
        memory go with it)."""
        outer, current = None, vars(module).get('forward')
        while isinstance(current, _ForwardWrapper):
            if isinstance(current, cls):
                inner = current.eager_forward
                if outer is not None:
                    outer.eager_forward = inner
                elif isinstance(inner, _ForwardWrapper):
                    module.forward = inner
                else:
                    del module.forward  # the class's forward again
                return
            outer, current = current, current.eager_forward

    def release(self) -> None:
        """Drop the graphs (their memory returns to PyTorch's allocator)
        and the call counts: shapes are counted and captured anew."""
        self.graphs.clear()
        self.calls.clear()
        self.pool = None

    def pool_bytes(self) -> int:
        """GPU memory the graphs' pool holds (reserved; mmengine's
        ``memory`` figure, the peak allocated, does not count it)."""
        if self.pool is None:
            return 0
        return sum(s['total_size'] for s in torch.cuda.memory_snapshot()
                   if tuple(s.get('segment_pool_id', ())) == tuple(self.pool))

    def _moved(self) -> bool:
        # the captured tensors' addresses (model.to() and .cuda() give a
        # parameter new memory in place of the old)
        return any(t.data_ptr() != p
                   for t, p in zip(self.tensors, self.pointers))


def _capture_autocast(dtype: Optional[torch.dtype]) -> torch.autocast:
    """The caller's autocast (``dtype``, or off for None) for a capture,
    with autocast's weight cache off: the graph records its casts (a cast
    cached before the capture would be replayed stale), as
    ``make_graphed_callables`` requires; the cache only saves repeated casts
    within one step, and a replay issues its recorded casts anyway."""
    return torch.autocast('cuda',
                          dtype=dtype or torch.float32,
                          enabled=dtype is not None,
                          cache_enabled=False)


def _check_counts(name: str, min_calls: int, max_graphs: int,
                  least_graphs: int, warmup_iters: int) -> None:
    if min_calls < 1 or max_graphs < least_graphs or warmup_iters < 1:
        raise ValueError(f'{name} needs min_calls >= 1, max_graphs >= '
                         f'{least_graphs} and warmup_iters >= 1, got '
                         f'{min_calls}, {max_graphs}, {warmup_iters}')


def find_wrapper(cls, module: nn.Module):
    """The ``cls`` (:class:`GraphedTraining` or :class:`GraphedInference`)
    in ``module.forward``'s chain, or None."""
    current = vars(module).get('forward')
    while isinstance(current, _ForwardWrapper):
        if isinstance(current, cls):
            return current
        current = current.eager_forward
    return None


class GraphedTraining(_ForwardWrapper):
    """Replaces ``module.forward``: training calls on CUDA replay CUDA
    graphs, the rest run the module's own forward.

    ``GraphedTraining.wrap(module)`` installs it (idempotent) and
    ``GraphedTraining.unwrap(module)`` removes it. The module takes one
    tensor argument and returns tensors (a tensor, or a tuple/list of them),
    as a backbone does.

    Args:
        module (nn.Module): The module; its parameters, buffers and the
            input must be on the current CUDA device.
        warmup_iters (int): ``make_graphed_callables``' warm-up iterations
            (cuDNN autotuning, Triton compilation, cuBLAS workspaces happen
            there, not in the capture). Defaults to 3.
        alias_parameters (bool): Capture with aliases of the parameters
            (the same memory, other tensor objects) and give the gradients
            to the real ones through the replay's autograd node. Needed
            under DDP: DDP creates the parameters' gradient accumulators on
            the default stream, and the capture, on a side stream, cannot
            feed gradients into them; the aliases' accumulators are made
            during the capture, on its stream. Defaults to False.
        min_calls (int): Training calls of one input form before it is
            captured. Defaults to 1 (the first call).
        max_graphs (int): Most input forms kept as graphs. The graphs hold
            the memory of their activations for as long as they are kept,
            in one pool: together about what the largest one needs.
            Defaults to 1.
        direct_grads (bool): The replay's backward sets the parameters'
            gradients itself (the graph's buffers, in the parameters'
            layout, as ``AccumulateGrad`` leaves them) instead of returning
            them through autograd, one node per parameter. Not under
            ``alias_parameters`` (DDP's hooks need autograd) nor for a
            module with hooks on its parameters (a hook added after a
            capture makes the next call capture again, through autograd).
            Defaults to True.
        one_grad_buffer (bool): With ``direct_grads``, the gradients are
            views of one flat buffer (``CUDAGraphHook`` asks for it under
            ``FlatReduceDDP``, which all-reduces that buffer as it is
            instead of packing the gradients first). Defaults to False.
    """

    def __init__(self,
                 module: nn.Module,
                 warmup_iters: int = 3,
                 alias_parameters: bool = False,
                 min_calls: int = 1,
                 max_graphs: int = 1,
                 direct_grads: bool = True,
                 one_grad_buffer: bool = False):
        _check_counts('GraphedTraining', min_calls, max_graphs, 1,
                      warmup_iters)
        self.module = module
        self.eager_forward = module.forward
        self.warmup_iters = warmup_iters
        self.alias_parameters = alias_parameters
        self.min_calls = min_calls
        self.max_graphs = max_graphs
        self.direct_grads = direct_grads
        self.one_grad_buffer = one_grad_buffer
        self.graphs: Dict[tuple, Callable] = {}  # call key: graphed forward
        self.calls: Dict[tuple, int] = {}  # calls of each uncaptured key
        self.pool = None  # the graphs' shared memory pool
        # the last replay's autograd node (a weak reference), until its
        # backward runs
        self._pending_backward = None
        self.params = ()  # the captured parameters
        self.tensors = ()  # parameters and buffers, in capture order
        self.pointers = ()  # their addresses at capture
        self.captures = 0
        self.replays = 0  # training calls replayed
        self.eager_calls = 0  # training calls on CUDA that ran eagerly
        self._warned = set()

    def _arguments(self) -> dict:
        return dict(warmup_iters=self.warmup_iters,
                    alias_parameters=self.alias_parameters,
                    min_calls=self.min_calls,
                    max_graphs=self.max_graphs,
                    direct_grads=self.direct_grads,
                    one_grad_buffer=self.one_grad_buffer)

    @staticmethod
    def call_key(x: Tensor) -> Optional[tuple]:
        """What a replay must match; None where no graph may run."""
        if not (x.is_cuda and torch.is_grad_enabled() and is_eager()
                and not torch.cuda.is_current_stream_capturing()):
            return None
        autocast = (torch.get_autocast_dtype('cuda')
                    if torch.is_autocast_enabled('cuda') else None)
        return (tuple(x.shape), x.stride(), x.dtype, x.device, x.requires_grad,
                autocast)

    def __call__(self, x: Tensor, *args, **kwargs):
        key = self.call_key(x) if self.module.training else None
        if key is None or args or kwargs:
            return self.eager_forward(x, *args, **kwargs)
        if self.graphs and self._moved():
            self._warn(
                'moved', 'its parameters or buffers moved to new memory '
                '(model.to(), .cuda()): capturing again')
            self.release()
        if self._hooked_since_capture():
            self._warn(
                'hooked', 'a parameter got a gradient hook after the '
                'capture, which set its gradient directly: capturing again, '
                'the gradients through autograd (which runs the hook)')
            self.release()
        graphed = self._graph_for(x, key)
        if graphed is None:
            self.eager_calls += 1
            return self.eager_forward(x)
        self.replays += 1
        out = graphed(x)
        self._await_backward(out)
        return out

    def _await_backward(self, out) -> None:
        """Mark the replay's backward pending until it runs, or until its
        autograd graph is freed without one: the replay's autograd node
        (a Python object, :func:`torch.cuda.make_graphed_callables`'
        Function) lives as long as that graph, whether or not the caller
        keeps the outputs."""
        node = (out if isinstance(out, Tensor) else out[0]).grad_fn
        if node is None:  # nothing to differentiate: no backward to wait on
            return
        pending = self._pending_backward = weakref.ref(node)

        def done(*_):
            if self._pending_backward is pending:
                self._pending_backward = None

        node.register_hook(done)

    def _backward_pending(self) -> bool:
        return (self._pending_backward is not None
                and self._pending_backward() is not None)

    def _graph_for(self, x: Tensor, key: tuple) -> Optional[Callable]:
        """The graphed forward for a training call of ``key``, captured
        now if it is due; None: run eagerly."""
        if self._grads_pending():
            if self.graphs:
                self._warn(
                    'grads', 'gradients are pending in its '
                    'parameters (accumulated over iterations, or '
                    'zero_grad without set_to_none): a replay would '
                    'overwrite them, so such calls run eagerly')
            return None
        if self._backward_pending():
            self._warn(
                'backward', 'a training call came before the backward of '
                'the previous replay (several forwards per step): a '
                'replay would overwrite the activations that backward '
                'reads, so such calls run eagerly')
            return None
        graphed = self.graphs.get(key)
        if graphed is None:
            calls = self.calls[key] = self.calls.get(key, 0) + 1
            if calls < self.min_calls:
                return None
            if len(self.graphs) >= self.max_graphs:
                # once, not once per shape (mmdet's batches change shape)
                self._warn(
                    'form', f'a call of another form ({self._describe(key)}'
                    f'; captured: {len(self.graphs)} forms, max_graphs='
                    f'{self.max_graphs}) runs eagerly, as will any other')
                return None
            del self.calls[key]
            graphed = self.graphs[key] = self._capture(x, key)
        return graphed

    def _capture(self, x: Tensor, key: tuple) -> Callable:
        module = self.module
        buffers = tuple(module.buffers())
        if not self.graphs:  # the addresses every graph of the module reads
            self.params = tuple(module.parameters())
            self.tensors = self.params + buffers
            self.pointers = tuple(t.data_ptr() for t in self.tensors)
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        saved = [b.clone() for b in buffers]
        rng = torch.cuda.get_rng_state()
        sample = x.detach().clone().requires_grad_(x.requires_grad)
        autocast = _capture_autocast(key[-1])
        # It replaces the forward of the module it is given: let it do so,
        # keep what it made, and put back what was installed (this object,
        # or a GraphedInference around it).
        installed = vars(module).pop('forward')
        try:
            with autocast, graph_capture():
                if self.alias_parameters:
                    graphed = self._capture_with_aliases(sample)
                elif (self.direct_grads and not _hooked(self.params)
                      and any(p.requires_grad for p in self.params)):
                    graphed = _ReplayedStep(self.eager_forward, sample,
                                            self.params, self.warmup_iters,
                                            self.pool, self.one_grad_buffer)
                else:
                    torch.cuda.make_graphed_callables(
                        module, (sample, ),
                        num_warmup_iters=self.warmup_iters,
                        pool=self.pool)
                    graphed = module.forward
        finally:
            module.forward = installed
            for b, value in zip(buffers, saved):
                b.copy_(value)
            torch.cuda.set_rng_state(rng)
        self.captures += 1
        return graphed

    def _capture_with_aliases(self, sample: Tensor):
        module = self.module
        names, params = zip(*module.named_parameters())
        aliases = tuple(p.detach().requires_grad_(p.requires_grad)
                        for p in params)

        def forward(x, *parameters):
            return torch.func.functional_call(module,
                                              dict(zip(names, parameters)),
                                              (x, ))

        graphed = torch.cuda.make_graphed_callables(
            forward, (sample, *aliases),
            num_warmup_iters=self.warmup_iters,
            pool=self.pool)
        # the real parameters: the same memory as the aliases (no copy at
        # replay), and their own gradient accumulators
        return lambda x: graphed(x, *params)

    def _hooked_since_capture(self) -> bool:
        # a graph that sets the gradients itself would skip the new hook
        return (any(isinstance(g, _ReplayedStep) for g in self.graphs.values())
                and _hooked(self.params))

    def _grads_pending(self) -> bool:
        return any(p.grad is not None for p in self.params)

    @staticmethod
    def _describe(key: tuple) -> str:
        shape, stride, dtype, _, _, autocast = key
        return (f'input {list(shape)} {dtype} stride {list(stride)}, '
                f'autocast {autocast}')

    def _warn(self, what, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            warnings.warn(f'GraphedTraining({type(self.module).__name__}): '
                          f'{message}')


def _hooked(params) -> bool:
    """Whether a parameter has hooks that only autograd runs (tensor hooks,
    post-accumulate-grad hooks)."""
    return any(p._backward_hooks or p._post_accumulate_grad_hooks
               for p in params)


class _ReplayedStep:
    """A module's training forward and backward captured as two CUDA
    graphs, as ``torch.cuda.make_graphed_callables`` captures them
    (warm-up on a side stream, the forward, then ``torch.autograd.grad`` of
    the outputs with respect to the input and the trained parameters), with
    a backward that hands the parameters their gradients directly.

    Called, it replays the forward through :class:`_Replay`, an autograd
    Function of the input and of ``anchor``, an empty tensor that requires
    grad so that autograd records the replay even when the input needs no
    gradient. Its backward replays the backward graph and sets each
    parameter's ``grad`` to the graph's buffer (added to a gradient already
    there), as ``AccumulateGrad`` would, without the autograd node and the
    stream event ``AccumulateGrad`` costs per parameter.
    """

    def __init__(self, forward: Callable, sample: Tensor, params: tuple,
                 warmup_iters: int, pool, one_buffer: bool = False):
        params = tuple(p for p in params if p.requires_grad)
        inputs = ((sample, ) if sample.requires_grad else ()) + params
        stream = torch.cuda.Stream()
        torch.cuda.synchronize()
        with torch.cuda.stream(stream):
            for _ in range(warmup_iters):
                outputs = _differentiable(forward(sample))
                torch.autograd.grad(outputs, inputs,
                                    [torch.empty_like(o) for o in outputs],
                                    allow_unused=True)
            del outputs
        torch.cuda.synchronize()
        self.forward_graph = torch.cuda.CUDAGraph()
        self.backward_graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.forward_graph, pool=pool, stream=stream):
            out = forward(sample)
        self.outputs = (out, ) if isinstance(out, Tensor) else tuple(out)
        self.output_type = None if isinstance(out, Tensor) else type(out)
        # the incoming gradients' buffers, None for outputs that need none
        self.grad_outputs = tuple(
            torch.empty_like(o) if o.requires_grad else None
            for o in self.outputs)
        with torch.cuda.graph(self.backward_graph, pool=pool, stream=stream):
            grads = torch.autograd.grad(
                _differentiable(self.outputs), inputs,
                [g for g in self.grad_outputs if g is not None],
                allow_unused=True)
            first = len(inputs) - len(params)
            self.input_grad = _in_parameters_layout(
                inputs[:first], grads[:first], False)[0] if first else None
            self.param_grads = _in_parameters_layout(
                params, grads[first:], one_buffer)
        self.input = sample
        self.params = params
        self.anchor = torch.empty(0, device=sample.device,
                                  requires_grad=True)

    def __call__(self, x: Tensor):
        out = _Replay.apply(x, self.anchor, self)
        if self.output_type is None:
            return out[0]
        return self.output_type(out)

    def replay_forward(self, x: Tensor) -> tuple:
        if x.data_ptr() != self.input.data_ptr():
            self.input.copy_(x)
        self.forward_graph.replay()
        return tuple(o.detach() for o in self.outputs)

    def replay_backward(self, grads: tuple) -> Optional[Tensor]:
        for static, grad in zip(self.grad_outputs, grads):
            if static is not None and static.data_ptr() != grad.data_ptr():
                static.copy_(grad)
        self.backward_graph.replay()
        for p, grad in zip(self.params, self.param_grads):
            if grad is None:
                continue
            if p.grad is None:
                p.grad = grad
            else:
                p.grad += grad
        return None if self.input_grad is None else self.input_grad.detach()


def _in_parameters_layout(params: tuple, grads: tuple,
                          one_buffer: bool) -> tuple:
    """The gradients (in the graph being captured) each in its
    parameter's (or input's) layout, as ``AccumulateGrad`` leaves it: the
    optimizers' multi-tensor kernels pair a parameter's elements with its
    gradient's in memory order; copied where they are not. ``one_buffer``:
    all copied into one flat buffer, one after another (for
    ``FlatReduceDDP``), where every parameter has a gradient and all share
    a dtype."""
    if not one_buffer or any(g is None for g in grads) or \
            len({(p.dtype, p.device) for p in params}) > 1:
        return tuple(
            g if g is None or g.stride() == p.stride() else
            torch.empty_like(p).copy_(g) for g, p in zip(grads, params))
    _, views = views_of_one_buffer(params)
    torch._foreach_copy_(views, grads)
    return views


def views_of_one_buffer(tensors) -> Tuple[Tensor, tuple]:
    """A new flat buffer and views of it, one after another, each in the
    shape and layout (strides) of one of ``tensors`` (dense ones, all of
    one dtype and device)."""
    flat = tensors[0].new_empty(sum(t.numel() for t in tensors))
    views, offset = [], 0
    for t in tensors:
        views.append(flat.as_strided(t.shape, t.stride(), offset))
        offset += t.numel()
    return flat, tuple(views)


def _differentiable(outputs) -> tuple:
    outputs = (outputs, ) if isinstance(outputs, Tensor) else outputs
    return tuple(o for o in outputs if o.requires_grad)


class _Replay(torch.autograd.Function):
    """:class:`_ReplayedStep`'s replay as a node of autograd's graph."""

    @staticmethod
    def forward(ctx, x, anchor, step):
        ctx.step = step
        return step.replay_forward(x)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        return ctx.step.replay_backward(grads), None, None


class GraphedInference(_ForwardWrapper):
    """Replaces ``module.forward``: inference calls on CUDA (eval mode, no
    autograd) replay a CUDA graph of the module's forward for each input
    shape seen ``min_calls`` times, up to ``max_graphs`` shapes; the rest
    run the module's own forward.

    Evaluating a segmentor at batch 1 is bound by the host issuing
    sMLPNet's ops (about 2,000 for a forward at 512x683, against Swin-T's
    1,200: docs/benchmarks.md); mmseg's sliding-window test runs the
    backbone on windows of one size, and a dataset's images often share a
    size. Shapes seen fewer times (and those beyond ``max_graphs``) run
    eagerly, so a dataset of all-different sizes costs no captures.

    The replay computes what the forward computes from the module's
    parameters and buffers as they are at that moment (updated in place:
    optimizer steps, EMA swaps, ``load_state_dict``); moved ones
    (``model.to()``) are captured again. Outputs are copies: the graph's
    own output buffers are overwritten by the next replay. The graphs hold
    their activations' memory, in one pool (together about what the largest
    one needs), until :meth:`release`.

    ``GraphedInference.wrap(module)`` installs it (idempotent; with a
    :class:`GraphedTraining` too, in either order) and
    ``GraphedInference.unwrap(module)`` removes it and its graphs.

    Args:
        module (nn.Module): The module; one tensor argument, returning a
            tensor or a tuple/list of tensors.
        min_calls (int): Calls of one input shape before it is captured
            (the capture costs ``warmup_iters`` + 1 forwards). Defaults
            to 2.
        max_graphs (int): Most shapes kept as graphs. Defaults to 8.
        warmup_iters (int): Forwards run before the capture (cuDNN's
            autotuning and Triton's compilation happen there, not in the
            capture). Defaults to 2.
    """

    def __init__(self,
                 module: nn.Module,
                 min_calls: int = 2,
                 max_graphs: int = 8,
                 warmup_iters: int = 2):
        _check_counts('GraphedInference', min_calls, max_graphs, 0,
                      warmup_iters)
        self.module = module
        self.eager_forward = module.forward
        self.min_calls = min_calls
        self.max_graphs = max_graphs
        self.warmup_iters = warmup_iters
        self.calls: Dict[tuple, int] = {}  # calls of each key so far
        self.graphs: Dict[tuple, tuple] = {}  # key: (graph, input, output)
        self.tensors = ()  # parameters and buffers at the captures
        self.pointers = ()  # their addresses
        self.pool = None  # the graphs' shared memory pool
        self.captures = 0
        self.replays = 0

    def _arguments(self) -> dict:
        return dict(min_calls=self.min_calls, max_graphs=self.max_graphs,
                    warmup_iters=self.warmup_iters)

    @staticmethod
    def call_key(x: Tensor) -> Optional[tuple]:
        """What a replay must match (the graph's input is dense, in ``x``'s
        memory format: a window's view of a larger image matches too);
        None where no graph may run."""
        if not (x.is_cuda and not torch.is_grad_enabled() and is_eager()
                and not torch.cuda.is_current_stream_capturing()):
            return None
        channels_last = (
            x.dim() == 4 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last))
        autocast = (torch.get_autocast_dtype('cuda')
                    if torch.is_autocast_enabled('cuda') else None)
        return (tuple(x.shape), channels_last, x.dtype, x.device, autocast,
                get_mode())

    def __call__(self, x: Tensor, *args, **kwargs):
        key = None if self.module.training else self.call_key(x)
        if key is None or args or kwargs:
            return self.eager_forward(x, *args, **kwargs)
        if self.graphs and self._moved():
            self.release()  # their addresses are stale: capture again
        entry = self.graphs.get(key)
        if entry is None:
            calls = self.calls[key] = self.calls.get(key, 0) + 1
            if calls < self.min_calls or len(self.graphs) >= self.max_graphs:
                return self.eager_forward(x)
            entry = self.graphs[key] = self._capture(x, key)
        graph, static_input, static_output = entry
        static_input.copy_(x)
        graph.replay()
        self.replays += 1
        if isinstance(static_output, Tensor):
            return static_output.clone()
        return type(static_output)(t.clone() for t in static_output)

    def _capture(self, x: Tensor, key: tuple) -> tuple:
        module = self.module
        self.tensors = tuple(module.parameters()) + tuple(module.buffers())
        self.pointers = tuple(t.data_ptr() for t in self.tensors)
        static_input = x.clone(memory_format=torch.channels_last
                               if key[1] else torch.contiguous_format)
        autocast = _capture_autocast(key[4])
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with autocast, torch.cuda.stream(stream):
            for _ in range(self.warmup_iters):
                self.eager_forward(static_input)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        # One memory pool for all the graphs: replays run one at a time and
        # their outputs are copied, so their activations may share memory.
        with autocast, torch.cuda.graph(graph, pool=self.pool):
            static_output = self.eager_forward(static_input)
        self.pool = graph.pool()
        self.captures += 1
        return graph, static_input, static_output

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
  replays for every later call that matches it; any other call (another
  shape: a last partial batch, mmdet's varying image sizes; eval mode, no
  grad, torch.compile, a CPU tensor) runs the module's own forward;
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
  eagerly instead).

Inside the capture, mmsmlp's Triton kernels run in training too
(:func:`.fast_paths.graph_capture`): their kernels are faster than
PyTorch's and, replayed, their host cost is gone.
"""
import warnings
from typing import Optional

import torch
from torch import Tensor, nn

from .fast_paths import graph_capture, is_eager


class GraphedTraining:
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
    """

    def __init__(self,
                 module: nn.Module,
                 warmup_iters: int = 3,
                 alias_parameters: bool = False):
        self.module = module
        self.eager_forward = module.forward
        self.warmup_iters = warmup_iters
        self.alias_parameters = alias_parameters
        self.graphed = None  # the graphed forward, once captured
        self.key = None  # what the captured call looked like
        self.params = ()  # the captured parameters
        self.tensors = ()  # parameters and buffers, in capture order
        self.pointers = ()  # their addresses at capture
        self.captures = 0
        self._warned = set()

    def __deepcopy__(self, memo):
        # A deep copy of the module (mmengine's EMA model, copy.deepcopy of
        # a model) gets a wrapper of its own, uncaptured: graphs and their
        # memory are not copied.
        module = memo.get(id(self.module))
        if module is None:
            raise TypeError('copy the module, not its GraphedTraining')
        copied = type(self)(module, self.warmup_iters,
                            self.alias_parameters)
        copied.eager_forward = type(self.module).forward.__get__(module)
        return copied

    @classmethod
    def wrap(cls, module: nn.Module, **kwargs) -> 'GraphedTraining':
        if isinstance(module.forward, cls):
            return module.forward
        graphed = cls(module, **kwargs)
        module.forward = graphed
        return graphed

    @staticmethod
    def unwrap(module: nn.Module) -> None:
        if isinstance(module.forward, GraphedTraining):
            del module.forward  # the class's forward again

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
        if self.graphed is not None and key == self.key:
            if self._moved():
                self._warn(
                    'moved', 'its parameters or buffers moved to new memory '
                    '(model.to(), .cuda()): capturing again')
                self.graphed = None
            elif self._grads_pending():
                self._warn(
                    'grads', 'gradients are pending in its '
                    'parameters (accumulated over iterations, or '
                    'zero_grad without set_to_none): a replay would '
                    'overwrite them, so such calls run eagerly')
                return self.eager_forward(x)
            else:
                return self.graphed(x)
        if self.graphed is None:
            self._capture(x, key)
            return self.graphed(x)
        # once, not once per shape (mmdet's batches change shape often)
        self._warn(
            'form', f'a call of another form ({self._describe(key)}; '
            f'captured: {self._describe(self.key)}) runs eagerly, as will '
            'any other')
        return self.eager_forward(x)

    def _capture(self, x: Tensor, key: tuple) -> None:
        module = self.module
        self.params = tuple(module.parameters())
        buffers = tuple(module.buffers())
        self.tensors = self.params + buffers
        saved = [b.clone() for b in buffers]
        rng = torch.cuda.get_rng_state()
        sample = x.detach().clone().requires_grad_(x.requires_grad)
        # make_graphed_callables needs autocast's weight cache off; the
        # cache only saves repeated casts within one step, and the graph
        # replays the casts it recorded anyway.
        autocast = torch.autocast('cuda',
                                  dtype=key[-1] or torch.float32,
                                  enabled=key[-1] is not None,
                                  cache_enabled=False)
        # It replaces the forward of the module it is given: let it do so,
        # keep what it made, and put this object back.
        del module.forward
        try:
            with autocast, graph_capture():
                if self.alias_parameters:
                    self.graphed = self._capture_with_aliases(sample)
                else:
                    torch.cuda.make_graphed_callables(
                        module, (sample, ), num_warmup_iters=self.warmup_iters)
                    self.graphed = module.forward
        finally:
            module.forward = self
            for b, value in zip(buffers, saved):
                b.copy_(value)
            torch.cuda.set_rng_state(rng)
        self.key = key
        self.pointers = tuple(t.data_ptr() for t in self.tensors)
        self.captures += 1

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
            forward, (sample, *aliases), num_warmup_iters=self.warmup_iters)
        # the real parameters: the same memory as the aliases (no copy at
        # replay), and their own gradient accumulators
        return lambda x: graphed(x, *params)

    def _moved(self) -> bool:
        # the captured tensors' addresses (model.to() and .cuda() give a
        # parameter new memory in place of the old)
        return any(t.data_ptr() != p
                   for t, p in zip(self.tensors, self.pointers))

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

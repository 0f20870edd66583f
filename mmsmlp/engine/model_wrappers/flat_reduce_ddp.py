# Copyright (c) mmsmlp contributors. All rights reserved.
"""DDP that all-reduces some submodules' gradients as one flat tensor."""
from typing import List, Optional, Sequence

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel
from mmengine.registry import MODEL_WRAPPERS
from torch import Tensor

from mmsmlp.utils.checks import named_submodule


@MODEL_WRAPPERS.register_module()
class FlatReduceDDP(MMDistributedDataParallel):
    """mmengine's ``MMDistributedDataParallel``, leaving the parameters of
    ``flat_modules`` (default: the backbone) out of DDP's buckets: their
    gradients are averaged over the ranks in one all-reduce of one flat
    tensor, once the backward has finished.

    DDP reduces a gradient when autograd's accumulator for its parameter has
    run, through a hook per parameter; a backbone trained through CUDA graphs
    (``CUDAGraphHook``) can only set its gradients itself, without those
    accumulators (host time per parameter, docs/benchmarks.md), if DDP does
    not wait for them. Its gradients all come at the end of the replayed
    backward, so DDP could not overlap their all-reduce with it anyway.
    The replay writes them into one buffer, which is what is all-reduced
    here; other gradients (an eager backward) are packed into one first.

    Configs use it with ``model_wrapper_cfg=dict(type='FlatReduceDDP')``
    (mmengine builds a wrapper only under a launcher, so one GPU is
    unaffected). Like DDP, it averages gradients (the sum over the ranks
    divided by their number), broadcasts rank 0's parameters when built,
    and skips the reduction inside ``no_sync()`` (mmengine's gradient
    accumulation). Like DDP without ``find_unused_parameters``, every
    trained parameter of ``flat_modules`` must get a gradient in each
    synchronised backward: one without it is an error naming it
    (``find_unused_parameters=True`` applies to DDP's part, the rest).

    Args:
        module (nn.Module): The model.
        flat_modules (Sequence[str]): Names of its submodules
            (``model.get_submodule`` names) whose gradients are reduced
            here. Defaults to ``('backbone', )``.
        broadcast_buffers (bool): DDP's option, off as in mmengine's
            default wrapper. Defaults to False.
        **kwargs: ``MMDistributedDataParallel``'s arguments.
    """

    def __init__(self,
                 module,
                 flat_modules: Sequence[str] = ('backbone', ),
                 broadcast_buffers: bool = False,
                 **kwargs):
        if isinstance(flat_modules, str):
            flat_modules = (flat_modules, )
        named = []
        for prefix in flat_modules:
            submodule = named_submodule(module, prefix, 'FlatReduceDDP')
            named += [(f'{prefix}.{n}', p)
                      for n, p in submodule.named_parameters()]
        # DDP leaves these out of its buckets (parameters only: buffers are
        # broadcast or not as DDP's option says)
        ignored = list(getattr(module, '_ddp_params_and_buffers_to_ignore',
                               ()))
        type(self)._set_params_and_buffers_to_ignore_for_model(
            module, ignored + [n for n, _ in named])
        super().__init__(
            module=module, broadcast_buffers=broadcast_buffers, **kwargs)
        self.flat_modules = tuple(flat_modules)
        self._flat_named = named
        self._flat_ids = {id(p) for _, p in named}
        for _, param in named:  # as DDP does for its own parameters
            dist.broadcast(param.detach(), 0, group=self.process_group)
        self._queued = False  # the reduction is queued for this backward
        self._packed: Optional[List[Tensor]] = None  # grads of last reduce
        self._packed_flat: Optional[Tensor] = None  # their common buffer

    def reduces(self, param: Tensor) -> bool:
        """Whether ``param``'s gradient is reduced here (not by DDP)."""
        return id(param) in self._flat_ids

    def forward(self, *inputs, **kwargs):
        output = super().forward(*inputs, **kwargs)
        if torch.is_grad_enabled() and self.require_backward_grad_sync:
            self._queued = False  # (a backward that failed left it set)
            output = _map_tensors(output, self._at_backward)
        return output

    def _at_backward(self, *tensors):
        return _QueueReduction.apply(self, *tensors)

    def queue_reduction(self) -> None:
        """From autograd's backward: reduce once the backward is done."""
        if not self._queued:
            self._queued = True
            torch.autograd.Variable._execution_engine.queue_callback(
                self._reduce)

    def _reduce(self) -> None:
        self._queued = False
        trained = [(n, p) for n, p in self._flat_named if p.requires_grad]
        missing = [n for n, p in trained if p.grad is None]
        if missing:
            raise RuntimeError(
                f'FlatReduceDDP: {len(missing)} trained parameters of '
                f'{list(self.flat_modules)} got no gradient in this backward '
                f'(e.g. {missing[:3]}); all must, on every rank (or set '
                'requires_grad=False on those the model does not use)')
        grads = [p.grad for _, p in trained]
        if not grads:
            return
        world = dist.get_world_size(self.process_group)
        flat = self._common_buffer(grads)
        if flat is not None:
            flat.div_(world)
            dist.all_reduce(flat, group=self.process_group)
            return
        # each dtype packed into one tensor, reduced, and copied back
        by_dtype = {}
        for grad in grads:
            by_dtype.setdefault(grad.dtype, []).append(grad)
        for group in by_dtype.values():
            # reshape(-1) reads a channels_last gradient in logical order;
            # the copy back writes it in the same order
            packed = torch.cat([g.reshape(-1) for g in group])
            packed.div_(world)
            dist.all_reduce(packed, group=self.process_group)
            torch._foreach_copy_(
                group, [piece.view(g.shape) for piece, g in zip(
                    packed.split([g.numel() for g in group]), group)])

    def _common_buffer(self, grads: List[Tensor]) -> Optional[Tensor]:
        """The 1-d tensor the gradients tile in order (a replay's buffer,
        ``_ReplayedStep``), or None; a buffer is remembered for the same
        tensors (others are not kept: their memory is freed with them)."""
        if self._packed is not None and len(grads) == len(self._packed) \
                and all(a is b for a, b in zip(grads, self._packed)):
            return self._packed_flat
        flat = flat_buffer_of(grads)
        self._packed = None if flat is None else list(grads)
        self._packed_flat = flat
        return flat


def flat_buffer_of(tensors: Sequence[Tensor]) -> Optional[Tensor]:
    """The 1-d tensor of the memory ``tensors`` fill one after another,
    each dense (contiguous or channels_last) where the previous one ends, or
    None if they do not."""
    first = tensors[0]
    storage = first.untyped_storage()
    offset = start = first.storage_offset()
    for t in tensors:
        dense = t.is_contiguous() or (t.dim() == 4 and t.is_contiguous(
            memory_format=torch.channels_last))
        if not (dense and t.dtype == first.dtype
                and t.untyped_storage().data_ptr() == storage.data_ptr()
                and t.storage_offset() == offset):
            return None
        offset += t.numel()
    return first.new_empty(0).set_(storage, start, (offset - start, ))


def _map_tensors(output, fn):
    """``output`` (a tensor, or dicts, lists and tuples of them) with its
    tensors that require grad replaced by ``fn(*those)``."""
    found = []

    def collect(value):
        if isinstance(value, Tensor):
            if value.requires_grad:
                found.append(value)
        elif isinstance(value, dict):
            for v in value.values():
                collect(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                collect(v)

    collect(output)
    if not found:
        return output
    replaced = dict(zip(map(id, found), fn(*found)))

    def rebuild(value):
        if isinstance(value, Tensor):
            return replaced.get(id(value), value)
        if isinstance(value, dict):
            return type(value)((k, rebuild(v)) for k, v in value.items())
        if isinstance(value, tuple) and hasattr(value, '_fields'):
            return type(value)(*map(rebuild, value))
        if isinstance(value, (list, tuple)):
            return type(value)(map(rebuild, value))
        return value

    return rebuild(output)


class _QueueReduction(torch.autograd.Function):
    """Identity on the outputs; its backward, the first of the model's to
    run, queues the flat reduction for the end of the backward (as DDP's
    own ``_DDPSink`` queues its work)."""

    @staticmethod
    def forward(ctx, wrapper, *tensors):
        ctx.wrapper = wrapper
        return tuple(t.clone() for t in tensors)

    @staticmethod
    def backward(ctx, *grads):
        ctx.wrapper.queue_reduction()
        return (None, *grads)

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Compatibility of the pinned OpenMMLab stack with current torch and
transformers: one small module per upstream library, each naming the
versions it is for and tested in ``tests/test_compat.py``.

``import mmsmlp`` applies only what is registration, not a change of what
other code computes:

- :mod:`.torch_checkpoint` allow-lists, for ``torch.load(weights_only=True)``,
  the data-only types that mmengine's own checkpoints hold (a plain
  ``torch.load`` of a Runner checkpoint fails on torch >= 2.6 without them);
  nothing that can run code is allowed, and loading stays weights-only.
- :mod:`.mmpretrain` registers mmpretrain's placeholders for its multimodal
  models where its BLIP code cannot import (transformers >= 4.56).

What used to be patched globally is now opt-in under mmsmlp's own names:
atomic checkpoint writes (``AtomicCheckpointHook``), compiling the model's
forward (``CompileForwardHook``, ``tools/train.py --compile``), the strict
checkpoint check (``tools/test.py``, ``mmsmlp.utils.check_checkpoint``).
"""
from .mmpretrain import skip_multimodal_models_on_new_transformers
from .torch_checkpoint import (MMENGINE_CHECKPOINT_GLOBALS,
                               allow_mmengine_checkpoints, load_checkpoint_file,
                               trust_checkpoints)

__all__ = [
    'MMENGINE_CHECKPOINT_GLOBALS', 'allow_mmengine_checkpoints',
    'load_checkpoint_file', 'trust_checkpoints',
    'skip_multimodal_models_on_new_transformers'
]

# Copyright (c) mmsmlp contributors. All rights reserved.
"""Compatibility of the pinned OpenMMLab stack with current torch and
transformers: one small module per upstream library, each naming the
versions it is for and tested in ``tests/test_compat.py``.

- :mod:`.torch_checkpoint`: checkpoints that load weights-only on torch >=
  2.6 (the project's ``SafeCheckpointHook`` writes them), the named opt-in
  for trusted legacy files, and the tools' checked loading. Nothing is
  changed at import.
- :mod:`.mmpretrain`: on ``import mmsmlp``, mmpretrain's placeholders for
  its multimodal models where its BLIP code cannot import (transformers >=
  4.56), the one thing ``import mmsmlp`` does beside registering modules.

What used to be patched globally is now opt-in under mmsmlp's own names:
atomic checkpoint writes (``SafeCheckpointHook``), compiling the model's
forward (``CompileForwardHook``, ``tools/train.py --compile``), the strict
checkpoint check (``tools/test.py``, ``mmsmlp.utils.check_checkpoint``).
"""
from .mmpretrain import skip_multimodal_models_on_new_transformers
from .torch_checkpoint import (from_plain_data, load_checkpoint_file,
                               to_plain_data, trust_checkpoints)

__all__ = [
    'from_plain_data', 'load_checkpoint_file', 'to_plain_data',
    'trust_checkpoints', 'skip_multimodal_models_on_new_transformers'
]

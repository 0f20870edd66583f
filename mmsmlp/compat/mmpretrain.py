# Copyright (c) mmsmlp contributors. All rights reserved.
"""mmpretrain 1.2.0 with transformers >= 4.56 (transformers 5 included).

mmpretrain's BLIP code imports helpers that transformers 4.56 removed
(``apply_chunking_to_forward``, ...) inside a bare ``try``, sets them to
``None`` on failure and then subclasses ``None``: ``import
mmpretrain.models`` (and everything importing it: mmpretrain's inferencers,
``mmpretrain.evaluation``, mmdet's and mmseg's models) raises ``TypeError:
NoneType takes no arguments``. mmpretrain handles a *missing* transformers
by registering placeholders for its multimodal models
(``WITH_MULTIMODAL = False``); this chooses that path for the versions it
cannot import.

It can only act when ``import mmsmlp`` comes before the first import of
``mmpretrain.models`` (configs import mmsmlp through ``custom_imports``
before any model is built). ``tools/install.sh`` does not install
transformers, so the README's environment has no breakage in any import
order; environments that ship transformers >= 4.56 (see
docs/get_started.md) need ``import mmsmlp`` first or
``pip install 'transformers<4.56'``.
"""
import sys


def skip_multimodal_models_on_new_transformers() -> bool:
    """Set mmpretrain's ``WITH_MULTIMODAL`` to False where transformers >=
    4.56 is installed and mmpretrain's models are not imported yet. Returns
    whether it did."""
    import mmpretrain.utils.dependency as dependency
    if 'mmpretrain.models' in sys.modules:
        return False  # imported already: too late to choose, nothing to do
    if dependency.WITH_MULTIMODAL and dependency.satisfy_requirement(
            'transformers>=4.56.0'):
        dependency.WITH_MULTIMODAL = False
        return True
    return False

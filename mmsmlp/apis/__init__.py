# Copyright (c) mmsmlp contributors. All rights reserved.
from .model_index import (CLASSIFICATION_METAFILES, model_index_root,
                          register_models)

# mmpretrain's `list_models` / `get_model` find mmsmlp's ImageNet models by
# name once mmsmlp is imported.
register_models()

__all__ = ['CLASSIFICATION_METAFILES', 'model_index_root', 'register_models']

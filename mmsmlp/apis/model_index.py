# Copyright (c) mmsmlp contributors. All rights reserved.
"""mmsmlp's models by name: ``model-index.yml`` and the metafiles it imports
(``configs/*/metafile.yml``), as the OpenMMLab codebases ship them.

``mim search mmsmlp`` reads ``mmsmlp/.mim/model-index.yml`` (written by
setup.py). mmpretrain's ``list_models`` / ``get_model`` read mmpretrain's own
index plus any registered with ``ModelHub.register_model_index``, its public
hook for other packages: :func:`register_models` registers mmsmlp's
classification models there.
"""
import os.path as osp
from typing import Sequence

# mmpretrain builds ImageClassifiers only: the detection and segmentation
# metafiles are listed in model-index.yml for mim, not registered in
# mmpretrain's hub (get_model could not build a MaskRCNN or an
# EncoderDecoder).
CLASSIFICATION_METAFILES = ('configs/smlpnet/metafile.yml', )

_registered = set()


def model_index_root() -> str:
    """The folder holding ``model-index.yml`` and the ``configs`` its paths
    are relative to: ``mmsmlp/.mim`` of an installed package (setup.py makes
    it: links for an editable install, copies in a wheel) or, for a source
    checkout used without installing it (``PYTHONPATH=.``), the repository
    root."""
    package = osp.dirname(osp.dirname(osp.abspath(__file__)))
    candidates = (osp.join(package, '.mim'), osp.dirname(package))
    for root in candidates:
        if osp.isfile(osp.join(root, 'model-index.yml')):
            return root
    raise FileNotFoundError(
        'mmsmlp\'s model-index.yml is in neither of '
        f'{[osp.join(c, "model-index.yml") for c in candidates]}: install '
        'mmsmlp with pip (setup.py puts it into mmsmlp/.mim)')


def register_models(
        metafiles: Sequence[str] = CLASSIFICATION_METAFILES) -> None:
    """Register the models of ``metafiles`` (paths under
    :func:`model_index_root`) in mmpretrain's ``ModelHub``, with their
    config paths resolved under the same root. Each metafile is registered
    once per process (the hub refuses a name twice)."""
    from mmpretrain.apis.model import ModelHub
    root = model_index_root()
    for metafile in metafiles:
        path = osp.join(root, metafile)
        if path in _registered:
            continue
        if not osp.isfile(path):
            raise FileNotFoundError(f'metafile {path} does not exist')
        ModelHub.register_model_index(path, config_prefix=root)
        _registered.add(path)

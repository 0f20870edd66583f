#!/usr/bin/env bash
# One-command setup of mmsmlp and its OpenMMLab stack into the active Python.
#
#   bash tools/install.sh            # CPU machine (or CUDA machine: mmcv then builds its CUDA ops)
#   bash tools/install.sh --tests    # also the test requirements
#
# Environment: PYTHON (default: python), TORCH_SPEC (default: torch==2.14.1 torchvision==0.29.1),
# MMSMLP_CACHE (default: ~/.cache/mmsmlp; the built mmcv wheel is kept there so that a second
# install, even into a new virtualenv, does not rebuild it), MAX_JOBS (parallel compile jobs).
set -euo pipefail
PY=${PYTHON:-python}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${MMSMLP_CACHE:-$HOME/.cache/mmsmlp}
MMCV_VERSION=2.1.0
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}
pip_install() { "$PY" -m pip install --disable-pip-version-check "$@"; }
log() { echo "[mmsmlp install] $*"; }

# 1. torch + torchvision (mmpretrain imports torchvision, so both must import together).
if "$PY" -c "import torch, torchvision" 2>/dev/null; then
  log "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed"
else
  # shellcheck disable=SC2086
  pip_install $TORCH_SPEC
fi

# 2. mmcv's setup.py imports pkg_resources (removed in setuptools 82) and torch (so no build
#    isolation); ninja lets the C++ ops compile in parallel.
pip_install "setuptools<82" wheel ninja

# 3. mmcv 2.1.0 with compiled ops. PyPI has only its source distribution.
if "$PY" -c "import mmcv, mmcv.ops, sys; sys.exit(mmcv.__version__ != '$MMCV_VERSION')" 2>/dev/null; then
  log "mmcv $MMCV_VERSION with compiled ops already installed: not rebuilding"
else
  TAG=$("$PY" -c "import sys, torch; print(f'py{sys.version_info[0]}{sys.version_info[1]}-torch{torch.__version__}'.replace('+', '_'))")
  WHEEL_DIR="$CACHE/wheels/mmcv-$MMCV_VERSION-$TAG"
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    BUILD=$(mktemp -d)
    log "building mmcv $MMCV_VERSION from source in $BUILD (about 10 minutes on 2 cores)"
    "$PY" -m pip download --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$BUILD"
    tar -xzf "$BUILD"/mmcv-$MMCV_VERSION.tar.gz -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    # torch >= 2.14 headers need C++20; mmcv 2.1.0 hard-codes C++17.
    if "$PY" -c "import sys, torch; v=tuple(int(p) for p in torch.__version__.split('+')[0].split('.')[:2]); sys.exit(v < (2, 14))"; then
      log "torch >= 2.14: compiling mmcv with -std=c++20"
      sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
    fi
    (cd "$SRC" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" -m pip wheel --no-build-isolation --no-deps -w "$BUILD/dist" .)
    mkdir -p "$WHEEL_DIR"
    cp "$BUILD"/dist/mmcv-*.whl "$WHEEL_DIR/"
    rm -rf "$BUILD"
  else
    log "reusing the mmcv wheel built earlier in $WHEEL_DIR"
  fi
  pip_install --no-deps "$WHEEL_DIR"/mmcv-*.whl
  # mmcv's own runtime requirements (without letting pip touch mmcv itself).
  pip_install addict packaging Pillow pyyaml yapf "opencv-python>=3"
fi

# 4. The OpenMMLab codebases and mmsmlp itself, editable, at the tested versions
#    (requirements/tested.txt, a constraints file: mmcv stays the one built above; mmdet 3.3.0
#    and mmseg 1.2.2 refuse mmcv >= 2.2). transformers is not installed: mmpretrain 1.2.0 and
#    mmdet 3.3.0 need it only for their multimodal models, and cannot import those with
#    transformers >= 4.56 (docs/get_started.md).
CONSTRAINTS="$ROOT/requirements/tested.txt"
pip_install -c "$CONSTRAINTS" -r "$ROOT/requirements/runtime.txt" -r "$ROOT/requirements/optional.txt"
pip_install -c "$CONSTRAINTS" --no-build-isolation -e "$ROOT"
if [[ "${1:-}" == "--tests" ]]; then
  pip_install -c "$CONSTRAINTS" -r "$ROOT/requirements/tests.txt"
  # mim (tests/test_sharing.py) without its dependency opendatalab, whose
  # openxlab pins setuptools 60 and old requests; mim never imports it.
  pip_install --no-deps "openmim==0.3.9"
fi
if "$PY" -c "import importlib.metadata as m, sys; v = m.version('transformers'); sys.exit(tuple(int(p) for p in v.split('.')[:2]) < (4, 56))" 2>/dev/null; then
  log "WARNING: transformers >= 4.56 is installed: mmpretrain 1.2.0's multimodal models cannot import"
  log "  with it, so 'import mmpretrain.models' (and mmdet/mmseg models) fails unless 'import mmsmlp'"
  log "  comes first (our configs and tools do that). Other tools: pip install 'transformers<4.56'."
fi
"$PY" -c "import mmsmlp; print('[mmsmlp install] mmsmlp', mmsmlp.__version__, 'ready')" 

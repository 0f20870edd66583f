#!/usr/bin/env bash
# Quick start with no dataset on disk: generate a small ImageNet-format
# dataset, train a small sMLPNet on it, evaluate it, and classify one image.
#   bash tools/quickstart.sh [WORK_DIR]     (default work_dirs/quickstart)
set -euo pipefail
cd "$(dirname "$0")/.."
WORK_DIR=${1:-work_dirs/quickstart}
CONFIG=configs/quickstart/smlpnet-mini_1xb32_synthetic-in1k-format.py

python tools/dataset_converters/make_synthetic_imagenet.py data/synthetic_imagenet
python tools/train.py "$CONFIG" --work-dir "$WORK_DIR"
python tools/test.py "$CONFIG" "$WORK_DIR/epoch_12.pth" --work-dir "$WORK_DIR/test"
python tools/demo/image_demo.py data/synthetic_imagenet/val/triangle/triangle_00000.JPEG \
    "$CONFIG" "$WORK_DIR/epoch_12.pth"

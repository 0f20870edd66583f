#!/usr/bin/env bash
# 1 GPU against N GPUs (DDP through tools/dist_train.sh / dist_test.sh) on
# generated data: the sMLPNet-T ImageNet config (speed, LR scaling, logs and
# checkpoints written once, the same test metric on 1 and N GPUs), then a
# short Mask R-CNN sMLPNet-T run on N GPUs.
#   GPUS=2 bash tools/analysis_tools/multi_gpu_check.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
GPUS=${GPUS:-2}
OUT=${OUT:-/tmp/multi_gpu_check}
export ITERS=${ITERS:-100} PER_CLASS=${PER_CLASS:-300} WORKERS=${WORKERS:-6}
export DATA=$OUT/imagenet
CFG=$ROOT/configs/smlpnet/smlpnet-t_8xb128_in1k.py
mkdir -p "$OUT"

for n in 1 "$GPUS"; do
  echo "== classification, $n GPU(s), --auto-scale-lr"
  WORK_DIR=$OUT/cls_${n}gpu EXTRA_ARGS=--auto-scale-lr \
    bash "$ROOT/tools/analysis_tools/cls_speed.sh" "$CFG" "$n" > "$OUT/cls_${n}gpu.log" 2>&1 \
    || { tail -30 "$OUT/cls_${n}gpu.log"; exit 1; }
  grep -E "\[cls_speed\]|Scaling the original LR|Distributed training is|world_size" "$OUT/cls_${n}gpu.log" | sort -u | head -5
  echo "   files written: $(find "$OUT/cls_${n}gpu" -name '*.log' | wc -l) log, $(find "$OUT/cls_${n}gpu" -name '*.pth' | wc -l) checkpoint(s)"
done

for n in 1 "$GPUS"; do
  echo "== dist_test, $n GPU(s), checkpoint of the $GPUS-GPU run"
  "$ROOT/tools/dist_test.sh" "$CFG" "$OUT/cls_${GPUS}gpu/iter_${ITERS}.pth" "$n" \
    --work-dir "$OUT/test_${n}gpu" --cfg-options test_dataloader.dataset.data_root="$DATA" \
    > "$OUT/test_${n}gpu.log" 2>&1 || { tail -30 "$OUT/test_${n}gpu.log"; exit 1; }
  grep -E "Epoch\(test\)" "$OUT/test_${n}gpu.log" | tail -1
done

echo "== Mask R-CNN sMLPNet-T, $GPUS GPUs, fp16 AMP, 1333x800"
python "$ROOT/tools/dataset_converters/make_synthetic_coco.py" "$OUT/coco" --size 1333x800 --num-train 64 --num-val 8 > /dev/null
"$ROOT/tools/dist_train.sh" "$ROOT/configs/mask_rcnn/mask-rcnn_smlpnet-t_fpn_1x_coco.py" "$GPUS" --amp \
  --work-dir "$OUT/det_${GPUS}gpu" --cfg-options model.backbone.init_cfg=None \
  train_dataloader.dataset.data_root="$OUT/coco/" val_dataloader.dataset.data_root="$OUT/coco/" \
  test_dataloader.dataset.data_root="$OUT/coco/" \
  val_evaluator.ann_file="$OUT/coco/annotations/instances_val2017.json" \
  test_evaluator.ann_file="$OUT/coco/annotations/instances_val2017.json" train_cfg._delete_=True train_cfg.type=IterBasedTrainLoop \
  train_cfg.max_iters=30 train_cfg.val_interval=1000 default_hooks.checkpoint=None \
  default_hooks.logger.interval=10 train_dataloader.num_workers=4 > "$OUT/det.log" 2>&1 \
  || { tail -30 "$OUT/det.log"; exit 1; }
grep -E "train\).*\[30/|Scaling the original LR" "$OUT/det.log" | cut -c1-200
echo "   log files: $(find "$OUT/det_${GPUS}gpu" -name '*.log' | wc -l)"

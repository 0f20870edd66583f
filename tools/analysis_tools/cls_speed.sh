#!/usr/bin/env bash
# Train an ImageNet config for some iterations on generated ImageNet-format
# data (bf16 AMP by default) and print iterations/s and peak memory from the
# Runner's log.
#   tools/analysis_tools/cls_speed.sh [CONFIG] [GPUS]
# Environment: ITERS (default 300), DATA (default /tmp/synthetic_imagenet_256),
# PER_CLASS (train images per class, default 600), AMP_DTYPE (bfloat16|float16|none),
# WORKERS (default 8), EXTRA_ARGS (more train.py options, e.g. --auto-scale-lr).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CONFIG=${1:-$ROOT/configs/smlpnet/smlpnet-t_8xb128_in1k.py}
GPUS=${2:-1}
ITERS=${ITERS:-300}
DATA=${DATA:-/tmp/synthetic_imagenet_256}
WORK_DIR=${WORK_DIR:-/tmp/cls_speed/$(basename "$CONFIG" .py)_${GPUS}gpu}

python "$ROOT/tools/dataset_converters/make_synthetic_imagenet.py" "$DATA" \
    --train-per-class "${PER_CLASS:-600}" --val-per-class 20 --size 256
WARMUP=$(( ITERS < 100 ? ITERS / 2 : 50 ))
OPTIONS=(
  train_dataloader.dataset.data_root="$DATA"
  val_dataloader.dataset.data_root="$DATA"
  test_dataloader.dataset.data_root="$DATA"
  train_dataloader.num_workers="${WORKERS:-8}"
  train_cfg._delete_=True train_cfg.type=IterBasedTrainLoop
  train_cfg.max_iters="$ITERS" train_cfg.val_interval="$ITERS"
  default_hooks.logger.interval=50
  default_hooks.checkpoint.interval="$ITERS" default_hooks.checkpoint.by_epoch=False
  # the configs' TimmCosineLR, counted in iterations: warm-up, then cosine
  param_scheduler.0.by_epoch=False param_scheduler.0.t_initial="$ITERS"
  param_scheduler.0.warmup_t="$WARMUP" param_scheduler.0.delay=0
)
if [[ "${AMP_DTYPE:-bfloat16}" != none ]]; then  # none: fp32 (e.g. on a CPU)
  OPTIONS+=(optim_wrapper.type=AmpOptimWrapper optim_wrapper.dtype="${AMP_DTYPE:-bfloat16}")
fi
if [[ "$GPUS" == 1 ]]; then
  # shellcheck disable=SC2086
  python "$ROOT/tools/train.py" "$CONFIG" --work-dir "$WORK_DIR" ${EXTRA_ARGS:-} --cfg-options "${OPTIONS[@]}"
else
  # shellcheck disable=SC2086
  "$ROOT/tools/dist_train.sh" "$CONFIG" "$GPUS" --work-dir "$WORK_DIR" ${EXTRA_ARGS:-} --cfg-options "${OPTIONS[@]}"
fi
python - "$WORK_DIR" <<'PY'
import glob, json, sys
log = sorted(glob.glob(f'{sys.argv[1]}/*/vis_data/scalars.json'))[-1]
rows = [r for r in map(json.loads, open(log)) if 'loss' in r]
rows = rows[1:] or rows  # the first interval includes warm-up
t = sum(r['time'] for r in rows) / len(rows)
d = sum(r['data_time'] for r in rows) / len(rows)
m = max(r.get('memory', 0) for r in rows)
print(f'[cls_speed] {t:.4f} s/iter ({1 / t:.2f} it/s), data_time {d:.4f} s, '
      f'peak memory {m} MB (per GPU, from the log)')
PY

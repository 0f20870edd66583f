# The official sMLPNet ImageNet-1k recipe (microsoft/SPACH, DeiT training
# script), on mmpretrain's bases. The arch files set the model size.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmsmlp'], allow_failed_imports=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='SMLPNet', arch='tiny', img_size=224),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=640,
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        init_cfg=None,  # PyTorch's default init, as the official code
        cal_acc=False),
    # mmpretrain's Mixup and CutMix (same draws and outputs) without the
    # host waiting for the GPU at each (a blocking copy of their index)
    train_cfg=dict(augments=[
        dict(type='AsyncMixup', alpha=0.8),
        dict(type='AsyncCutMix', alpha=1.0),
    ]),
)

# mmpretrain's data preprocessor (the base's mean, std and RGB order; the
# same outputs), making the one-hot labels for Mixup/CutMix in one op
# instead of one per image, and copying the batch to the GPU without
# waiting for it (non_blocking=True, its default)
data_preprocessor = dict(type='BatchedClsDataPreprocessor')

# mmpretrain's pipelines (imagenet_bs64_swin_224.py: RandAugment and random
# erasing, as DeiT) with CheckedLoadImageFromFile as the first step: a
# corrupt or truncated image raises an error naming it (`skip_broken=True`
# skips it instead, counted in the log). CheckedImageNet is mmpretrain's
# ImageNet whose annotation files are checked when built (labels out of
# range, not integers or missing: an error naming the file and line).
bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
# RandAugment's ops: mmpretrain's 'timm_increasing' list, in its order (the
# same draws), with AutoContrast and Equalize computed through lookup
# tables (LUTAutoContrast, LUTEqualize: the same images; RandAugment costs
# the data workers about a quarter less; mmsmlp/datasets/transforms/
# lookup_ops.py)
randaug_policies = [
    dict(type='LUTAutoContrast'),
    dict(type='LUTEqualize'),
    dict(type='Invert'),
    dict(type='Rotate', magnitude_range=(0, 30)),
    dict(type='Posterize', magnitude_range=(4, 0)),
    dict(type='Solarize', magnitude_range=(256, 0)),
    dict(type='SolarizeAdd', magnitude_range=(0, 110)),
    dict(type='ColorTransform', magnitude_range=(0, 0.9)),
    dict(type='Contrast', magnitude_range=(0, 0.9)),
    dict(type='Brightness', magnitude_range=(0, 0.9)),
    dict(type='Sharpness', magnitude_range=(0, 0.9)),
    dict(type='Shear', magnitude_range=(0, 0.3), direction='horizontal'),
    dict(type='Shear', magnitude_range=(0, 0.3), direction='vertical'),
    dict(type='Translate', magnitude_range=(0, 0.45), direction='horizontal'),
    dict(type='Translate', magnitude_range=(0, 0.45), direction='vertical'),
]
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies=randaug_policies,
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(
            pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(
        type='RandomErasing',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=bgr_mean,
        fill_std=bgr_std),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(
        type='ResizeEdge',
        scale=256,
        edge='short',
        backend='pillow',
        interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

# 8 GPUs x 128 images = 1024; AdamW lr 5e-4 per 512 images, scaled by
# auto_scale_lr (base 1024) when `--auto-scale-lr` is given.
train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    pin_memory=True,
    persistent_workers=True,
    collate_fn=dict(type='default_collate'),
    # repeated augmentation (DeiT's RASampler, 3 repeats)
    sampler=dict(type='RepeatAugSampler', shuffle=True, _delete_=True),
    # the last partial batch is dropped, as the official loader does: 1251
    # iterations per epoch on 8 GPUs x 128 (1252 with it)
    drop_last=True,
    dataset=dict(type='CheckedImageNet', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    pin_memory=True,
    persistent_workers=True,
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CheckedImageNet', pipeline=test_pipeline))
test_dataloader = val_dataloader
# mmpretrain's Accuracy (same metrics), copying each batch's scores and
# labels to the host at once instead of two copies per image
val_evaluator = dict(type='BatchedAccuracy', topk=(1, 5))
test_evaluator = val_evaluator

# AdamW, lr 1e-3, wd 0.05, no decay on norms and biases (from the base:
# norm_decay_mult=0, bias_decay_mult=0, flat_decay_mult=0), in mixed
# precision as the official (torch.cuda.amp): MixedPrecisionOptimWrapper
# picks bf16 on a GPU that has it, fp16 with dynamic loss scaling on an older
# GPU and fp32 without a GPU (`optim_wrapper.dtype='float32'` forces fp32).
# GroupedOptimWrapperConstructor: the same per-parameter options as
# mmengine's default constructor in 2 parameter groups instead of one per
# parameter tensor (an AdamW step of hundreds of groups bounds the eager
# training step; docs/benchmarks.md). fused=True: PyTorch's fused AdamW, the
# same update as its default (foreach) AdamW to float rounding, in one kernel
# launch per group: the foreach step's 7-9 ms of host time bounded the
# iteration on an H200 (3314 against 3023 img/s end to end).
optim_wrapper = dict(
    type='MixedPrecisionOptimWrapper',
    dtype='auto',
    constructor='GroupedOptimWrapperConstructor',
    optimizer=dict(fused=True),
    clip_grad=None)

# Fixed-size 224x224 batches: let cuDNN pick its fastest convolutions.
env_cfg = dict(cudnn_benchmark=True)

# The official learning-rate curve: timm's CosineLRScheduler (DeiT's
# `--sched cosine`) over the 300 epochs, with the 20 linear warm-up epochs
# from 1e-6 laid over its start, min 1e-5, stepped per epoch after each
# epoch (delay=1: epoch e trains with timm's value for e - 1). Only the peak
# (the optimizer's lr) is scaled by --auto-scale-lr, as in the official.
param_scheduler = [
    dict(
        type='TimmCosineLR',
        t_initial=300,  # = train_cfg.max_epochs
        lr_min=1e-5,
        warmup_t=20,
        warmup_lr_init=1e-6,
        delay=1,
        by_epoch=True)
]

# Seed 0 plus the rank on each GPU, as the official (`args.seed +
# get_rank()`): drop path, Mixup/CutMix and augmentations differ across
# GPUs. The data sampler's seed stays common to all ranks (mmengine gives it
# rank 0's when diff_rank_seed is set).
randomness = dict(seed=0, diff_rank_seed=True)

custom_hooks = [
    # DeiT's model EMA (timm ModelEma: decay 0.99996 per iteration, buffers
    # averaged too), kept beside the trained model: validation reports the
    # trained model (as the official) and the EMA under `ema/`; checkpoints
    # hold the trained weights in `state_dict`, the EMA in `ema_state_dict`.
    # ForeachEMA: mmengine's ExponentialMovingAverage by foreach ops.
    dict(
        type='RawAndEMAHook',
        ema_type='ForeachEMA',
        momentum=4e-5,
        update_buffers=True,
        priority='ABOVE_NORMAL'),
    # each epoch's randomness depends on (seed, rank, epoch) only: a resumed
    # run equals an unbroken one
    dict(type='EpochSeedHook'),
    # stop at a NaN/Inf loss (skip such steps instead with
    # optim_wrapper.type='SkipNonFiniteOptimWrapper', which trains in fp32),
    # the losses read every 50 iterations (and before each checkpoint, which
    # is never saved with a non-finite loss pending): the error names the
    # first non-finite iteration; `check_interval=1` stops at once, at the
    # cost of a host synchronisation per iteration
    dict(type='FiniteLossHook', check_interval=50),
    # the backbone's training forward and backward replayed as CUDA graphs
    # (the eager step is bound by the host issuing its kernels; the same
    # values are computed; docs/benchmarks.md). Batches are fixed-size
    # (224 crops, drop_last); without CUDA it does nothing. Turn it off
    # with `--cfg-options custom_hooks.3.enabled=False`.
    dict(type='CUDAGraphHook'),
    # batches handed from the loader's workers by shared-memory file names
    # (torch.multiprocessing 'file_system'), not descriptors fetched over a
    # socket per tensor, which starve the pin-memory thread of the GIL
    dict(type='LoaderSharingHook'),
    # weights and batches in channels_last memory on CUDA, the layout
    # sMLPNet's blocks compute in (the same values; docs/benchmarks.md)
    dict(type='ChannelsLastHook'),
    # the objects built before the loop kept out of Python's full garbage
    # collections (gc.freeze), each of which stalled an iteration for about
    # half a second (docs/benchmarks.md)
    dict(type='GCFreezeHook'),
]

# Under a launcher (tools/dist_train.sh, even with one GPU), DDP with the
# backbone's gradients averaged in one all-reduce of the buffer the CUDA
# graph's replay writes them to, not through DDP's hook per parameter:
# 3250 against 2929 img/s end to end for sMLPNet-T on one H200
# (docs/benchmarks.md). The head's gradients stay with DDP. Back to plain
# DDP with `--cfg-options model_wrapper_cfg.type=MMDistributedDataParallel`.
# mmengine ignores a top-level `find_unused_parameters` when a config has
# model_wrapper_cfg (tools/train.py stops with an error naming it): set
# `model_wrapper_cfg.find_unused_parameters=True` instead.
model_wrapper_cfg = dict(type='FlatReduceDDP')

# Checkpoints written atomically (a kill while saving leaves the previous
# ones intact; the disk needs room for one more checkpoint) in a form that
# loads weights-only (mmsmlp's SafeCheckpointHook).
# DeferredRuntimeInfoHook: mmengine's RuntimeInfoHook (the same logged
# values and checkpoints) reading the losses when the logger needs them
# instead of after every iteration, where the host would wait for the GPU.
default_hooks = dict(
    checkpoint=dict(type='SafeCheckpointHook'),
    runtime_info=dict(type='DeferredRuntimeInfoHook'))

# torch.compile is off unless asked for: `tools/train.py --compile` (the
# model's forward with torch.compile's defaults) or `--compile
# reduce-overhead` (CUDA graphs, the fastest training step measured,
# docs/benchmarks.md); in a config file, add
# `dict(type='CompileForwardHook', mode='reduce-overhead')` to custom_hooks.

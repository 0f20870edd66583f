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
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]),
)

# mmpretrain's pipelines (imagenet_bs64_swin_224.py: RandAugment and random
# erasing, as DeiT) with CheckedLoadImageFromFile as the first step: a
# corrupt or truncated image raises an error naming it (`skip_broken=True`
# skips it instead, counted in the log). CheckedImageNet is mmpretrain's
# ImageNet whose annotation files are checked when built (labels out of
# range, not integers or missing: an error naming the file and line).
bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
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
        policies='timm_increasing',
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
    dataset=dict(type='CheckedImageNet', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=128,
    num_workers=8,
    pin_memory=True,
    persistent_workers=True,
    collate_fn=dict(type='default_collate'),
    dataset=dict(type='CheckedImageNet', pipeline=test_pipeline))
test_dataloader = val_dataloader

# AdamW, lr 1e-3, wd 0.05, no decay on norms and biases (from the base:
# norm_decay_mult=0, bias_decay_mult=0, flat_decay_mult=0); 20 linear warm-up
# epochs from 1e-6, then cosine to 1e-5 over 300 epochs (from the base).
optim_wrapper = dict(clip_grad=None)

custom_hooks = [
    # DeiT's model EMA, decay 0.99996 per iteration; validation uses it.
    dict(type='EMAHook', momentum=4e-5, priority='ABOVE_NORMAL'),
    # each epoch's randomness depends on (seed, epoch) only: a resumed run
    # equals an unbroken one
    dict(type='EpochSeedHook'),
    # stop at the first NaN/Inf loss (skip such steps instead with
    # optim_wrapper.type='SkipNonFiniteOptimWrapper')
    dict(type='FiniteLossHook'),
]

# torch.compile is off unless asked for: `--cfg-options compile=True`
# (torch.compile's defaults) or `compile.mode=reduce-overhead` (CUDA graphs,
# the fastest training step measured, docs/benchmarks.md); in a config file,
# `compile = dict(mode='reduce-overhead')`. mmsmlp compiles the model's
# forward (see mmsmlp/compat.py), not mmengine's whole train_step.

# Quick start: a small sMLPNet trained from scratch on the generated
# "shapes" dataset (ImageNet's folder + annotation-file layout, 10 classes,
# chance = 10% top-1) in a few minutes on a CPU. Generate the data with
#   python tools/dataset_converters/make_synthetic_imagenet.py data/synthetic_imagenet
# or run everything with `bash tools/quickstart.sh`.
_base_ = [
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmsmlp'], allow_failed_imports=False)

classes = ('circle', 'square', 'triangle', 'cross', 'ring', 'bar', 'diamond',
           'checker', 'dots', 'frame')
data_root = 'data/synthetic_imagenet'

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='SMLPNet',
        arch=dict(embed_dims=32, depths=[1, 1, 2, 1], mlp_ratio=3),
        img_size=64),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=len(classes),
        in_channels=256,
        loss=dict(type='CrossEntropyLoss'),
        topk=(1, 5)))

data_preprocessor = dict(
    num_classes=len(classes),
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

# CheckedLoadImageFromFile: a corrupt or truncated image raises an error
# naming it (`skip_broken=True` skips it instead, with a count in the log).
# CheckedImageNet: ImageNet whose annotation file is checked when built (a
# label out of range, not an integer or missing: an error naming the line).
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=64, crop_ratio_range=(0.6, 1.0),
         backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(type='ResizeEdge', scale=73, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=32,
    num_workers=2,
    persistent_workers=True,
    collate_fn=dict(type='default_collate'),
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='CheckedImageNet',
        data_root=data_root,
        split='train',
        metainfo=dict(classes=classes),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=2,
    persistent_workers=True,
    collate_fn=dict(type='default_collate'),
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='CheckedImageNet',
        data_root=data_root,
        split='val',
        metainfo=dict(classes=classes),
        pipeline=test_pipeline))
# mmpretrain's Accuracy, copying each batch to the host at once
val_evaluator = dict(type='BatchedAccuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# the base's no-decay rules for norms and biases, in 2 parameter groups
optim_wrapper = dict(
    constructor='GroupedOptimWrapperConstructor',
    optimizer=dict(lr=2e-3, weight_decay=0.05))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-2, by_epoch=True, end=1,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=1),
]
max_epochs = 12
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=4)
auto_scale_lr = dict(base_batch_size=32)

# The ImageNet configs' training path, minus what needs a GPU: the losses
# read when logged (DeferredRuntimeInfoHook: the same logs and checkpoints)
# and the loader's batches handed over by shared-memory file names
# (LoaderSharingHook); docs/benchmarks.md says why.
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10),
    runtime_info=dict(type='DeferredRuntimeInfoHook'),
    checkpoint=dict(type='SafeCheckpointHook', interval=4, max_keep_ckpts=2,
                    save_best='auto'))
custom_hooks = [
    # each epoch's randomness depends on (seed, epoch) only: a resumed run
    # equals an unbroken one
    dict(type='EpochSeedHook'),
    # stop at the first NaN/Inf loss (skip such steps instead with
    # optim_wrapper.type='SkipNonFiniteOptimWrapper')
    dict(type='FiniteLossHook'),
    dict(type='LoaderSharingHook'),
]
randomness = dict(seed=0)

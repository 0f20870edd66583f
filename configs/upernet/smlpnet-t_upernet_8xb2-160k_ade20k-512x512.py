# UperNet + sMLPNet-T on ADE20K: 512x512 crops, 160k iterations, 8 GPUs x 2
# images. mmseg's Swin-T UperNet recipe (AdamW lr 6e-5, wd 0.01, no decay on
# the backbone's norms, 1500 linear warm-up iterations, then poly decay;
# UperNet + auxiliary FCN head with SyncBN) with the backbone swapped.
# See docs/segmentation.md.
_base_ = [
    'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py',  # noqa
    '../_base_/smlpnet_decay_keys.py'
]
custom_imports = dict(imports=['mmsmlp'], allow_failed_imports=False)
default_scope = 'mmseg'

# An ImageNet-1k checkpoint of configs/smlpnet/smlpnet-t_8xb128_in1k.py
# (no sMLPNet-T weights were released): train it, then
#   python tools/model_converters/publish_model.py \
#       work_dirs/smlpnet-t_8xb128_in1k/epoch_300.pth \
#       checkpoints/smlpnet-t_8xb128_in1k.pth
# and link the file it names to this path (docs/model_zoo.md). Backbone
# weights under 'backbone.'.
checkpoint = 'checkpoints/smlpnet-t_8xb128_in1k.pth'
crop_size = (512, 512)

model = dict(
    backbone=dict(
        _delete_=True,
        type='SMLPNet',
        arch='tiny',
        # The sparse-MLP weights are kept at the crop size: the 224x224
        # ImageNet weights are resampled once when loaded, training crops use
        # them as they are, and so does every sliding window at test time.
        img_size=crop_size,
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,  # as mmseg's Swin-T UperNet
        # Frozen ImageNet BatchNorm statistics (affine parameters are still
        # trained): 2 images per GPU give noisy batch statistics, and SyncBN
        # would add 2 all-reduces per block. The heads keep SyncBN.
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        init_cfg=dict(
            type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    decode_head=dict(in_channels=[80, 160, 320, 640], num_classes=150),
    auxiliary_head=dict(in_channels=320, num_classes=150),
    # Whole-image inference, as mmseg's Swin-T results (the numbers users
    # compare with); sliding 512x512 windows with
    # `--cfg-options model.test_cfg.mode=slide` (docs/segmentation.md).
    test_cfg=dict(mode='whole', crop_size=crop_size, stride=(341, 341)))

# Swin-T's AdamW, its keys for Swin's position tables replaced: no weight
# decay on the backbone's norms and biases (its ImageNet rule); the heads
# decay all but norms, as Swin-T's (configs/_base_/smlpnet_decay_keys.py).
# Parameters with the same options share a parameter group.
optim_wrapper = dict(
    constructor='GroupedOptimWrapperConstructor',
    paramwise_cfg=dict(
        _delete_=True, custom_keys={{_base_.smlpnet_decay_keys}}))

# mmseg's ADE20K pipelines (configs/_base_/datasets/ade20k.py) with
# CheckedLoadAnnotations: a label map with values above the 150 classes
# (other than 255, ignored), in colour, or of another size than its image
# raises an error naming it (checked per sample, when it is loaded).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='CheckedLoadAnnotations', num_classes=150,
         reduce_zero_label=True),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='CheckedLoadAnnotations', num_classes=150,
         reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# Stop on a non-finite loss, naming the iteration, and re-seed at the start
# of the run (docs/get_started.md, "Fault tolerance").
# CUDAGraphHook: the backbone's training forward and backward replayed as
# CUDA graphs (training crops are all 512x512; at 2 images per GPU the
# eager step is bound by the host issuing kernels), and, in validation and
# testing (batch 1), its forward for input sizes that repeat (the sliding
# windows; images of one size). `--cfg-options custom_hooks.2.enabled=False`
# runs it eagerly; `custom_hooks.2.inference=False` evaluates eagerly.
# GCFreezeHook: the objects built before the loop kept out of Python's
# full garbage collections, each of which would stall an iteration
# (docs/benchmarks.md).
custom_hooks = [
    dict(type='EpochSeedHook'),
    dict(type='FiniteLossHook'),
    dict(type='CUDAGraphHook', inference=True),
    dict(type='GCFreezeHook'),
]
# Checkpoints written atomically (a kill while saving leaves the previous
# ones intact) in a form that loads weights-only (mmsmlp's hook).
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))

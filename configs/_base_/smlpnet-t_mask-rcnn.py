# The sMLPNet-T parts of the Mask R-CNN configs (1x and ms-crop-3x), as
# variables under their own names: those configs also inherit an mmdet base
# that defines `model` and `optim_wrapper`, and mmengine refuses a key that
# two bases both define.

_base_ = ['./smlpnet_decay_keys.py']

smlpnet_backbone = dict(
    _delete_=True,
    type='SMLPNet',
    arch='tiny',
    img_size=224,  # the sparse-MLP weights' size: that of the checkpoint
    out_indices=(0, 1, 2, 3),
    drop_path_rate=0.2,
    # BatchNorm: the ImageNet statistics stay frozen, the affine terms train
    # (as mmdet does for ResNet): 2 images per GPU give noisy batch
    # statistics, and SyncBN would cost 2 all-reduces per block.
    norm_cfg=dict(type='BN', requires_grad=True),
    norm_eval=True,
    with_cp=False,
    # An ImageNet-1k checkpoint of configs/smlpnet/smlpnet-t_8xb128_in1k.py
    # (no sMLPNet-T weights were released): train it, then
    #   python tools/model_converters/publish_model.py \
    #       work_dirs/smlpnet-t_8xb128_in1k/epoch_300.pth \
    #       checkpoints/smlpnet-t_8xb128_in1k.pth
    # and link the file it names to this path (docs/model_zoo.md).
    init_cfg=dict(
        type='Pretrained',
        checkpoint='checkpoints/smlpnet-t_8xb128_in1k.pth',
        prefix='backbone.'))

# No weight decay on the backbone's norms and biases (its ImageNet rule); the
# neck and heads decay all but norms, as Swin-T's (smlpnet_decay_keys.py).
# Parameters with the same options share a parameter group
# (GroupedOptimWrapperConstructor).
smlpnet_optim_wrapper = dict(
    type='OptimWrapper',
    constructor='GroupedOptimWrapperConstructor',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=0.0001,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    paramwise_cfg=dict(
        _delete_=True, custom_keys={{_base_.smlpnet_decay_keys}}))

# Re-seed every epoch (an interrupted run resumed with --resume repeats the
# unbroken run's randomness) and stop on a non-finite loss, naming the
# iteration (docs/get_started.md, "Fault tolerance").
# CUDAGraphHook: the backbone's training forward and backward replayed as
# CUDA graphs for the batch shapes that repeat (at 2 images per GPU the
# eager step is bound by the host issuing kernels). A batch takes its
# images' largest size, and COCO's images come in a few sizes: a graph for
# each shape seen twice, up to 8 shapes; the others train eagerly. The
# graphs keep their activations' memory, in one pool: about what the largest
# shape needs (docs/detection.md, "GPU speed").
# `--cfg-options custom_hooks.2.enabled=False` trains eagerly.
# GCFreezeHook: the objects built before the loop (the libraries, model,
# datasets, the val annotations CocoMetric keeps: about 620,000) kept out
# of Python's full garbage collections, each of which would stall an
# iteration (0.25-0.32 s on our development CPU; docs/benchmarks.md).
smlpnet_custom_hooks = [
    dict(type='EpochSeedHook'),
    dict(type='FiniteLossHook'),
    dict(type='CUDAGraphHook', training=dict(min_calls=2, max_graphs=8)),
    dict(type='GCFreezeHook'),
]

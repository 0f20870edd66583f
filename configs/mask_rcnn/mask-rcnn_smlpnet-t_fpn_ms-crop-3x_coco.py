# Mask R-CNN + FPN with an sMLPNet-T backbone on COCO, 3x schedule (36
# epochs, steps at 27 and 33) with multi-scale training and random crops,
# 8 GPUs x 2 images: mmdet's Swin-T Mask R-CNN ms-crop-3x recipe with the
# backbone replaced (model and optimizer as in
# mask-rcnn_smlpnet-t_fpn_1x_coco.py).
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'
custom_imports = dict(imports=['mmsmlp'], allow_failed_imports=False)
default_scope = 'mmdet'

# The ImageNet-1k checkpoint of configs/smlpnet (tools/train.py) or the
# official weights converted by tools/model_converters/spach2mmsmlp.py.
pretrained = 'checkpoints/smlpnet-t_8xb128_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='SMLPNet',
        arch='tiny',
        img_size=224,  # the sparse-MLP weights' size: that of the checkpoint
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        # Frozen ImageNet BatchNorm statistics, trained affine terms (see
        # mask-rcnn_smlpnet-t_fpn_1x_coco.py and docs/detection.md).
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        with_cp=False,
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')),
    neck=dict(in_channels=[80, 160, 320, 640]))

# No weight decay on norms (BatchNorm, LayerNorm) and biases.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=0.0001,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        custom_keys={'norm': dict(decay_mult=0.)}))

# Re-seed every epoch (an interrupted run resumed with --resume repeats the
# unbroken run's randomness) and stop on a non-finite loss, naming the
# iteration (docs/get_started.md, "Fault tolerance").
custom_hooks = [dict(type='EpochSeedHook'), dict(type='FiniteLossHook')]

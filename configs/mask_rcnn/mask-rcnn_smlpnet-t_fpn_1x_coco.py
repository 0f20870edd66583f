# Mask R-CNN + FPN with an sMLPNet-T backbone on COCO, 1x schedule (12
# epochs), 8 GPUs x 2 images: mmdet's Swin-T Mask R-CNN recipe (AdamW
# lr 1e-4, wd 0.05, 1000 warm-up iterations, steps at epochs 8 and 11) with
# the backbone replaced (configs/_base_/smlpnet-t_mask-rcnn.py). See
# docs/detection.md.
_base_ = [
    'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py',
    '../_base_/smlpnet-t_mask-rcnn.py'
]
custom_imports = dict(imports=['mmsmlp'], allow_failed_imports=False)
default_scope = 'mmdet'

pretrained = {{_base_.smlpnet_backbone.init_cfg.checkpoint}}
model = dict(
    backbone={{_base_.smlpnet_backbone}},
    neck=dict(in_channels=[80, 160, 320, 640]))
optim_wrapper = {{_base_.smlpnet_optim_wrapper}}
custom_hooks = {{_base_.smlpnet_custom_hooks}}
# Checkpoints written atomically (a kill while saving leaves the previous
# ones intact) in a form that loads weights-only (mmsmlp's hook).
default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))

# mmdet's CocoDataset that counts the annotations it drops (NaN or empty
# boxes, unknown categories, ...: one warning per file), refuses a file with
# nothing usable and names missing fields (docs/get_started.md).
train_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
val_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
test_dataloader = val_dataloader

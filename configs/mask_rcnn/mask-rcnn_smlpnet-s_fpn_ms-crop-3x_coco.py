# Mask R-CNN + FPN with an sMLPNet-S backbone on COCO, 3x schedule with
# multi-scale training and random crops; the recipe of
# mask-rcnn_smlpnet-t_fpn_ms-crop-3x_coco.py. See docs/detection.md.
_base_ = './mask-rcnn_smlpnet-t_fpn_ms-crop-3x_coco.py'

# The official sMLPNet-S ImageNet weights, converted (docs/model_zoo.md):
#   python tools/model_converters/spach2mmsmlp.py smlp_s.pth \
#       checkpoints/smlpnet-s_3rdparty_in1k.pth
pretrained = 'checkpoints/smlpnet-s_3rdparty_in1k.pth'

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[96, 192, 384, 768]))

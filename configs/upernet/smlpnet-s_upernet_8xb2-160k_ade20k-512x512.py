# UperNet + sMLPNet-S on ADE20K (the sMLPNet-T recipe, see that config).
_base_ = './smlpnet-t_upernet_8xb2-160k_ade20k-512x512.py'

# The official sMLPNet-S ImageNet weights, converted (docs/model_zoo.md):
#   python tools/model_converters/spach2mmsmlp.py smlp_s.pth \
#       checkpoints/smlpnet-s_3rdparty_in1k.pth
checkpoint = 'checkpoints/smlpnet-s_3rdparty_in1k.pth'

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint=checkpoint)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))

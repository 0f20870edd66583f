# sMLPNet-B's recipe with the crop's resize, the flip, RandAugment and
# RandomErasing on the GPU: smlpnet-t_8xb128_in1k_gpucrop.py (which says
# what moves and why) with the model of smlpnet-b_8xb128_in1k.py.
_base_ = './smlpnet-t_8xb128_in1k_gpucrop.py'

model = dict(
    backbone=dict(arch='base', drop_path_rate=0.3),
    head=dict(in_channels=896))

# sMLPNet-S's recipe with RandAugment and RandomErasing applied on the GPU:
# smlpnet-t_8xb128_in1k_gpuaug.py (which says what moves and why) with the
# model of smlpnet-s_8xb128_in1k.py (tests/test_gpu_augment.py checks that
# the two agree).
_base_ = './smlpnet-t_8xb128_in1k_gpuaug.py'

model = dict(
    backbone=dict(arch='small', drop_path_rate=0.2),
    head=dict(in_channels=768))

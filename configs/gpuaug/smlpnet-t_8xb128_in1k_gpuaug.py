# sMLPNet-T's ImageNet recipe with RandAugment and RandomErasing applied on
# the GPU. On a GPU machine whose CPU cores bound training (the data
# workers decode, crop, flip, RandAugment and erase about 4.6 ms of one core
# per image; docs/benchmarks.md), the workers here only decode, crop and
# flip (the same pixels as the base config) and draw RandAugment's ops and
# magnitudes and RandomErasing's box with upstream's own random calls
# (RandAugmentParams, RandomErasingParams: the same numpy draws). The data
# preprocessor applies them to the uint8 batch on the GPU before
# normalisation (GPUAugClsDataPreprocessor; replayed as a CUDA graph,
# graph_augment=True: the same images), then does what the base's does
# (normalisation, RGB order, one-hot labels, Mixup/CutMix). What differs
# from the CPU pipeline: Rotate/Shear/Translate interpolate at exact
# coordinates (OpenCV at 1/32 pixel: a level or two on some pixels), and
# the erasing noise comes from torch's generator (so after an erased image
# the workers' numpy stream differs from the base config's; the same
# distributions). sMLPNet-S and -B: smlpnet-{s,b}_8xb128_in1k_gpuaug.py.
_base_ = '../smlpnet/smlpnet-t_8xb128_in1k.py'

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
        type='RandAugmentParams',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(
            pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(
        type='RandomErasingParams',
        erase_prob=0.25,
        mode='rand',
        min_area_ratio=0.02,
        max_area_ratio=1 / 3,
        fill_color=bgr_mean,
        fill_std=bgr_std),
    # PackInputs' default meta keys and the drawn parameters
    dict(
        type='PackInputs',
        meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor', 'flip', 'flip_direction', 'randaug_params',
                   'erase_params')),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

data_preprocessor = dict(type='GPUAugClsDataPreprocessor')

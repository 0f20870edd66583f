# sMLPNet-T's ImageNet recipe with the resize of RandomResizedCrop, the
# flip, RandAugment and RandomErasing on the GPU: the workers only decode,
# crop and draw (1.2 ms of one core per image on a development machine,
# where the CPU pipeline takes 3.1 and smlpnet-t_8xb128_in1k_gpuaug.py 2.3;
# docs/benchmarks.md). The crops of a
# batch travel as one buffer with Pillow's resampling tables
# (RandomResizedCropParams, RandomFlipParams, crop_collate) and the data
# preprocessor resizes them with Pillow's integer arithmetic: the same
# pixels as the CPU pipeline's Pillow resize and flip, then the gpuaug
# config's RandAugment and RandomErasing (and what differs there: see
# smlpnet-t_8xb128_in1k_gpuaug.py). The preprocessor works on a second CUDA
# stream (side_stream), beside the previous step's queued kernels.
# sMLPNet-S and -B: smlpnet-{s,b}_8xb128_in1k_gpucrop.py.
_base_ = './smlpnet-t_8xb128_in1k_gpuaug.py'

bgr_mean = [103.53, 116.28, 123.675]
bgr_std = [57.375, 57.12, 58.395]
train_pipeline = [
    dict(type='CheckedLoadImageFromFile'),
    dict(
        type='RandomResizedCropParams',
        scale=224,
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlipParams', prob=0.5, direction='horizontal'),
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
    # PackInputs' default meta keys and the pending resize, flip and drawn
    # parameters
    dict(
        type='PackInputs',
        meta_keys=('sample_idx', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor', 'flip', 'flip_direction', 'crop_resize',
                   'crop_flip', 'randaug_params', 'erase_params')),
]
train_dataloader = dict(
    collate_fn=dict(type='crop_collate'),
    dataset=dict(pipeline=train_pipeline))

# Validation and testing stay the base's (ResizeEdge + CenterCrop in the
# workers): on the 16-core H200 machine the device resize of whole decoded
# images (ResizeEdgeParams, CenterCropParams, crop_collate: the same pixels)
# validated at 2057-2137 img/s against 2252-2273 for the workers' resize
# (docs/benchmarks.md, which shows how to switch it on where the workers
# are the bound).
data_preprocessor = dict(side_stream=True)

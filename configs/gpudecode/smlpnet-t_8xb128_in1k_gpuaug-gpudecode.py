# Both GPU data paths: training's RandAugment and RandomErasing on the GPU
# (smlpnet-t_8xb128_in1k_gpuaug.py) and validation/test JPEGs decoded,
# resized and cropped on the GPU (smlpnet-t_8xb128_in1k_gpudecode.py); what
# each moves and what differs is said in those files.
_base_ = ['../smlpnet/smlpnet-t_8xb128_in1k_gpuaug.py']

test_resize = dict(scale=256, crop_size=224, interpolation='bicubic')

data_preprocessor = dict(type='GPUDataPreprocessor', **test_resize)

test_pipeline = [
    dict(type='LoadJPEGBytes', **test_resize),
    dict(type='PackInputs'),
]
val_dataloader = dict(
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

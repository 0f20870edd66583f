# sMLPNet-T (smlpnet-t_8xb128_in1k.py) with validation and test images
# decoded, resized and cropped on the GPU. Training is unchanged. (Outside
# configs/smlpnet/: a variant of a listed model, not a model of its own in
# model-index.yml.)
#
# What moves: the CPU test pipeline (CheckedLoadImageFromFile: OpenCV's
# decoding; ResizeEdge 256, Pillow bicubic; CenterCrop 224) runs in the data
# preprocessor on the GPU (JPEGDecodeDataPreprocessor): batched nvJPEG
# decoding (torchvision.io.decode_jpeg), then the same resize (output size;
# Pillow's antialiased bicubic filter by F.interpolate(antialias=True), in
# Pillow's two passes, each rounded to uint8) and crop. The workers only
# read the files (LoadJPEGBytes: a corrupt or truncated JPEG still raises
# an error naming it; a PNG, CMYK, progressive or EXIF-rotated image is
# decoded, resized and cropped on the CPU by the transforms above and joins
# the batch).
#
# What differs: pixel values, not the sizes or crops. nvJPEG's IDCT and
# chroma upsampling round differently from libjpeg-turbo's; the resize
# matches Pillow's up to its fixed-point coefficients (on the CPU, with the
# same decoder, the crops are at most 1 level apart, under 0.001 on
# average: tests/test_gpu_decode.py). With nvJPEG, and top-1 against the
# standard config: to be measured (docs/benchmarks.md,
# tools/analysis_tools/gpu_decode_check.py).
_base_ = '../smlpnet/smlpnet-t_8xb128_in1k.py'

# the test transform's parameters, in one place: the loading transform
# records the sizes they give, the data preprocessor checks them
test_resize = dict(scale=256, crop_size=224, interpolation='bicubic')

data_preprocessor = dict(type='JPEGDecodeDataPreprocessor', **test_resize)

test_pipeline = [
    dict(type='LoadJPEGBytes', **test_resize),
    dict(type='PackInputs'),
]
val_dataloader = dict(
    # the JPEGs' lengths differ: lists of byte tensors, not a stack
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

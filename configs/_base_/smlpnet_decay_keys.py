# Weight-decay exclusions of the sMLPNet backbone in the detection and
# segmentation configs, as `paramwise_cfg.custom_keys` (a variable under its
# own name: the configs' other bases define `optim_wrapper`).
#
# The backbone keeps the rule it was trained with on ImageNet (DeiT's: no
# decay on norms and biases); the neck and heads follow Swin-T's dense
# recipes (mmdet, mmseg), which decay everything but norms. mmengine's
# `bias_decay_mult` cannot be limited to the backbone, so the backbone's
# biased layers are named: custom keys match parameter names by substring
# (tests/test_detection.py and tests/test_segmentation.py check every
# parameter's decay).
smlpnet_decay_keys = {
    # every parameter whose name contains `norm`: the token mixers'
    # BatchNorms (norm1, norm2), the LayerNorms (norm3) and the output norms
    'norm': dict(decay_mult=0.),
    # the biased layers (the downsampling and depth-wise convs have none)
    'smlp.mix_h.bias': dict(decay_mult=0.),
    'smlp.mix_w.bias': dict(decay_mult=0.),
    'ffn.fc1.bias': dict(decay_mult=0.),
    'ffn.fc2.bias': dict(decay_mult=0.),
}

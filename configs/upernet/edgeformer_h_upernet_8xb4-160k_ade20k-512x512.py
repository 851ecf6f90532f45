# UperNet with an ImageNet-1K pre-trained EdgeFormer-H on ADE20K, 512x512 crops, 160k iterations.
# The EdgeFormer authors published no UperNet results; the settings are those of mmevo's EATFormer
# UperNet configs (AdamW 1.2e-4, 8 GPUs x 4 images). Everything not stated here is mmseg's R50
# UperNet recipe.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_160k.py'
]

# Converted with tools/model_converters/edgeformer_to_mmevo.py (see ../edgeformer/README.md).
checkpoint = 'checkpoints/edgeformer-h_in1k.pth'
crop_size = (512, 512)
# The backbone was trained on BGR images scaled to [0, 1] (no mean / std), as ml-cvnets feeds them.
data_preprocessor = dict(
    size=crop_size, mean=[0., 0., 0.], std=[255., 255., 255.], bgr_to_rgb=False)

model = dict(
    data_preprocessor=data_preprocessor,
    # EncoderDecoder would push this into the backbone.
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmevo.EdgeFormer',
        arch='h',
        out_indices=(0, 1, 2, 3),
        # Multi-GPU training; tools/train.py falls back to BN on CPU or in one process.
        norm_cfg=dict(type='SyncBN'),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    decode_head=dict(in_channels=[144, 216, 288, 432], num_classes=150),
    # The auxiliary FCN head reads stage 3 (in_index=2).
    auxiliary_head=dict(in_channels=288, num_classes=150))

# AdamW without weight decay on the backbone's norm layers.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1.2e-4, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(norm_decay_mult=0.))

# Poly (power 1) decay to 0 over 160k iterations, with a linear warm-up from 1e-6x over 1500.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=0, end=160000, by_epoch=False)
]

# 4 images per GPU (mmseg's ADE20K default); the name's `8xb4` assumes 8 GPUs.

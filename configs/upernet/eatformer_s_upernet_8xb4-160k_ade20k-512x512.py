# UperNet with an ImageNet-1K pre-trained EATFormer-Small on ADE20K, 512x512 crops, 160k iterations.
# Reproduces the official `eatformer_small_upsernet_ade20k.py` (zhangzjn/EATFormer) with mmseg 1.x:
# 47.3 mIoU published (single scale). Everything not stated here is mmseg's R50 UperNet recipe.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_160k.py'
]

# Converted with tools/model_converters/eatformer_to_mmevo.py (see README.md).
checkpoint = 'checkpoints/eatformer-small_in1k.pth'
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)

model = dict(
    data_preprocessor=data_preprocessor,
    # EncoderDecoder would push this into the backbone.
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmevo.EATFormer',
        arch='small',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        window_size=14,
        # Multi-GPU training; tools/train.py falls back to BN on CPU or in one process.
        norm_cfg=dict(type='SyncBN', eps=1e-6),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    decode_head=dict(in_channels=[64, 128, 320, 448], num_classes=150),
    # The auxiliary FCN head reads stage 3 (in_index=2).
    auxiliary_head=dict(in_channels=320, num_classes=150))

# AdamW without weight decay on the backbone's norm layers (the official custom key 'norm';
# mmseg's heads name their BatchNorms 'bn'). No fp16 in the official segmentation runs.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1.2e-4, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))

# Poly (power 1) decay to 0 over all 160k iterations, multiplied by a linear warm-up from 1e-6x over
# the first 1500 (mmcv 1.x 'poly' + 'linear' warm-up, as the official runs; the two overlap).
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=0, end=160000, by_epoch=False)
]

# 4 images per GPU, as the official runs, is the default of mmseg's ADE20K base; the name's `8xb4`
# assumes 8 GPUs (as in `dist_train.sh ... 8`).

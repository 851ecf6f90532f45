# SSDLite with an ImageNet-1K pre-trained EdgeFormer-S on COCO at 320x320: the paper's detection
# setting (official config/detection/edgeformer/ssd_edgeformer_s.yaml, ml-cvnets SSD) on mmdet's
# SSDLite. Everything not stated here is mmdet's ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py.
_base_ = 'mmdet::ssd/ssdlite_mobilenetv2-scratch_8xb24-600e_coco.py'

# Converted with tools/model_converters/edgeformer_to_mmevo.py (see README.md).
checkpoint = 'checkpoints/edgeformer-s_in1k.pth'

# The backbone was trained on BGR images scaled to [0, 1] (no mean / std), as ml-cvnets feeds them.
data_preprocessor = dict(mean=[0., 0., 0.], std=[255., 255., 255.], bgr_to_rgb=False)
# official SSD levels: strides 16 and 32 from the backbone, then 64, 128, 256 and a 1x1 map
# (proj_channels 256 / 128 / 128 / 64), anchor ratios [2, 3] and [2] on the last level
channels = (128, 160, 256, 128, 128, 64)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
        type='mmevo.EdgeFormer',
        arch='s',
        out_indices=(2, 3),
        # Multi-GPU training; tools/train.py falls back to BN on CPU or in one process.
        norm_cfg=dict(type='SyncBN'),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(
        in_channels=channels[:2],
        out_channels=channels,
        norm_cfg=dict(type='SyncBN', eps=1e-5, momentum=0.1),
        act_cfg=dict(type='ReLU')),
    bbox_head=dict(
        in_channels=channels,
        norm_cfg=dict(type='SyncBN', eps=1e-5, momentum=0.1),
        act_cfg=dict(type='ReLU'),
        anchor_generator=dict(ratios=[[2, 3], [2, 3], [2, 3], [2, 3], [2, 3], [2]])))

# Official augmentation: SSD crop, photometric distortion, flip, resize (no zoom-out / Expand).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='MinIoURandomCrop', min_ious=(0.1, 0.3, 0.5, 0.7, 0.9), min_crop_size=0.3),
    dict(type='Resize', scale=(320, 320), keep_ratio=False),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion', brightness_delta=32, contrast_range=(0.5, 1.5),
         saturation_range=(0.5, 1.5), hue_delta=18),
    dict(type='PackDetInputs')
]
# 4 GPUs x 32 images, 200 epochs (no dataset repetition).
train_dataloader = dict(batch_size=32, dataset=dict(times=1, dataset=dict(pipeline=train_pipeline)))
max_epochs = 200
train_cfg = dict(max_epochs=max_epochs, val_interval=10)

# AdamW 9e-4, weight decay 0.02 on every parameter, AMP; 500 warm-up iterations from lr/10, then
# cosine (per epoch) to 1e-6.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=9e-4, betas=(0.9, 0.999), weight_decay=0.02))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', T_max=max_epochs, eta_min=1e-6, by_epoch=True, begin=0,
         end=max_epochs),
]
custom_hooks = [
    dict(type='NumClassCheckHook'),
    dict(type='CheckInvalidLossHook', interval=50, priority='VERY_LOW'),
    dict(type='EMAHook', momentum=0.0005, priority='ABOVE_NORMAL'),
]
auto_scale_lr = dict(base_batch_size=128)

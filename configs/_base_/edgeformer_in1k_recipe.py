# EdgeFormer ImageNet-1k training recipe (official
# config/classification/edgeformer/edgeformer_s.yaml of hkzhang91/EdgeFormer, ml-cvnets), in
# mmpretrain terms. Every setting's source is in configs/edgeformer/README.md; the per-variant
# configs set the arch.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64.py',
    'mmpretrain::_base_/default_runtime.py',
]

# ml-cvnets feeds BGR images (read with cv2) scaled to [0, 1], without mean / std.
data_preprocessor = dict(
    num_classes=1000, mean=[0., 0., 0.], std=[255., 255., 255.], to_rgb=False)

model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmevo.EdgeFormer', arch='s'),
    neck=None,
    head=dict(
        type='mmevo.EdgeFormerClsHead',
        num_classes=1000,
        in_channels=160,
        dropout=0.2,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')))

# 256x256 crops (the official sampler also varies the crop between 160 and 320 px per batch).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=256, interpolation='bilinear'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=288, edge='short', interpolation='bilinear'),
    dict(type='CenterCrop', crop_size=256),
    dict(type='PackInputs'),
]
# 8 GPUs x 128 images
train_dataloader = dict(batch_size=128, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=64, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# AdamW, weight decay on every parameter (official no_decay_bn_filter_bias: false), AMP.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=4e-3, betas=(0.9, 0.999), weight_decay=0.025))

# 3000 warm-up iterations from lr/10, then cosine (per epoch) to lr/10 over 300 epochs.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=3000),
    dict(type='CosineAnnealingLR', T_max=300, eta_min=4e-4, by_epoch=True, begin=0, end=300),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
val_cfg = dict()
test_cfg = dict()

# EMA of the weights, momentum 0.0005 (evaluate the EMA weights, as the released checkpoint).
custom_hooks = [dict(type='EMAHook', momentum=0.0005, priority='ABOVE_NORMAL')]
auto_scale_lr = dict(base_batch_size=1024)

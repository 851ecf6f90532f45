# UperNet with EATFormer-Mobile trained from scratch on the synthetic shapes semantic segmentation
# demo (`python -m mmevo.datasets.demo_data`; ADE20K layout, 128x128 scenes; PNG 0 = ignore,
# 1 = background, 2-5 = shapes, read with reduce_zero_label), evaluated with mmseg's IoUMetric.
# A few minutes on a 2-core CPU: `python tools/demo.py --task seg`. The heads are narrowed for
# CPU speed and use BN (the base uses SyncBN).
_base_ = [
    'mmseg::_base_/models/upernet_r50.py', 'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py', 'mmseg::_base_/schedules/schedule_20k.py'
]

data_root = 'data/demo/ade/'
metainfo = dict(
    classes=('background', 'circle', 'square', 'triangle', 'star'),
    palette=[[90, 90, 90], [230, 60, 50], [50, 100, 230], [60, 200, 80], [245, 200, 40]])
num_classes = 5
crop_size = (128, 128)
norm_cfg = dict(type='BN', requires_grad=True)

model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmevo.EATFormer',
        arch='mobile',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.),
    # PyTorch's default init for the classifiers: from scratch, mmseg's N(0, 0.01) conv_seg init
    # leaves some classes unlearnt for hundreds of iterations.
    decode_head=dict(
        in_channels=[48, 64, 160, 256],
        channels=64,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        init_cfg=None),
    auxiliary_head=dict(
        in_channels=160,
        channels=32,
        num_classes=num_classes,
        norm_cfg=norm_cfg,
        init_cfg=None))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=crop_size, ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               reduce_zero_label=True)
train_dataloader = dict(
    batch_size=8, num_workers=2, dataset=dict(**dataset, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8, num_workers=2, dataset=dict(**dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader

max_iters = 600
train_cfg = dict(max_iters=max_iters, val_interval=200)
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=2e-3, betas=(0.9, 0.999), weight_decay=0.01))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=50, end=max_iters, by_epoch=False)
]
default_hooks = dict(
    logger=dict(interval=10), checkpoint=dict(interval=200, max_keep_ckpts=1))
randomness = dict(seed=0)
# Let the image show through the drawn masks (the background is a class here).
visualizer = dict(alpha=0.5)

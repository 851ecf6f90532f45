# Cascade Mask R-CNN (4conv1fc GIoU box heads) + FPN with an ImageNet-1K pre-trained DWNet-T, 3x
# schedule with multi-scale + crop augmentation on COCO. Reproduces the official
# `cascade_mask_rcnn_dwnet_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py`
# (Atten4Vis/DemystifyLocalViT) with mmdet 3.x: 49.9 box AP / 43.4 mask AP published.
# Everything not stated here is mmdet's R50-FPN Cascade Mask R-CNN.
_base_ = 'mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py'

# Converted with tools/model_converters/dwnet_to_mmevo.py (see README.md).
checkpoint = 'checkpoints/dwnet-tiny_in1k.pth'


def _giou_4conv1fc_head(target_stds):
    return dict(
        type='ConvFCBBoxHead',
        num_shared_convs=4,
        num_shared_fcs=1,
        in_channels=256,
        conv_out_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=80,
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=target_stds),
        reg_class_agnostic=False,
        reg_decoded_bbox=True,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=10.0))


model = dict(
    backbone=dict(
        _delete_=True,
        type='mmevo.DWNet',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        # the official downstream backbone: blocks pad their maps to multiples of 7, SyncBN
        # everywhere and on the four outputs (tools/train.py falls back to BN on CPU / 1 GPU)
        pad_to_window=True,
        norm_cfg=dict(type='SyncBN'),
        out_norm_cfg=dict(type='SyncBN'),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(in_channels=[96, 192, 384, 768]),
    roi_head=dict(bbox_head=[
        _giou_4conv1fc_head([0.1, 0.1, 0.2, 0.2]),
        _giou_4conv1fc_head([0.05, 0.05, 0.1, 0.1]),
        _giou_4conv1fc_head([0.033, 0.033, 0.067, 0.067]),
    ]))

# The DETR / Sparse R-CNN augmentation of the official config (mmdet 2.x AutoAugment of Resize /
# RandomCrop / Resize) in mmdet 3.x transforms, as mmdet's Swin `ms-crop-3x` configs write it.
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [
                dict(
                    type='RandomChoiceResize',
                    scales=[(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333),
                            (640, 1333), (672, 1333), (704, 1333), (736, 1333), (768, 1333),
                            (800, 1333)],
                    keep_ratio=True)
            ],
            [
                dict(
                    type='RandomChoiceResize',
                    scales=[(400, 1333), (500, 1333), (600, 1333)],
                    keep_ratio=True),
                dict(
                    type='RandomCrop',
                    crop_type='absolute_range',
                    crop_size=(384, 600),
                    allow_negative_crop=True),
                dict(
                    type='RandomChoiceResize',
                    scales=[(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333),
                            (640, 1333), (672, 1333), (704, 1333), (736, 1333), (768, 1333),
                            (800, 1333)],
                    keep_ratio=True)
            ],
        ]),
    dict(type='PackDetInputs')
]
# 2 images per GPU (the official dataset base); 8 GPUs assumed, as Swin's detection runs.
train_dataloader = dict(batch_size=2, num_workers=2, dataset=dict(pipeline=train_pipeline))
auto_scale_lr = dict(base_batch_size=16)

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
# 500 linear warm-up iterations from 0.001x (the official schedule_1x base), steps at 27 / 33.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[27, 33],
        gamma=0.1)
]

# AdamW 1e-4, weight decay 0.05, no gradient clipping, mixed precision (the official apex fp16
# hook: dynamic loss scaling). No weight decay on the parameters the official custom key 'norm'
# matched: the patch-embedding and patch-merging LayerNorms and the output norms (the blocks'
# BatchNorms are named bn* officially and were decayed).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(
        _delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'backbone.stem.norm': dict(decay_mult=0.),
            'backbone.stages.1.0.norm': dict(decay_mult=0.),
            'backbone.stages.2.0.norm': dict(decay_mult=0.),
            'backbone.stages.3.0.norm': dict(decay_mult=0.),
            'backbone.out_norms': dict(decay_mult=0.),
        }))

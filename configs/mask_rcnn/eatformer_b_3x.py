# Mask R-CNN + FPN with an ImageNet-1K pre-trained EATFormer-Base, 3x schedule (36 epochs) with
# multi-scale + crop augmentation on COCO. Reproduces the official
# `mask_rcnn_3x_ms_eatformer_base.py` (zhangzjn/EATFormer) with mmdet 3.x: 49.0 box AP /
# 44.2 mask AP published.
_base_ = './eatformer_b_1x.py'

# The DETR / Sparse R-CNN augmentation of the official configs (mmdet 2.x AutoAugment of Resize /
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
train_dataloader = dict(batch_size=3, num_workers=3, dataset=dict(pipeline=train_pipeline))

max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)

# The official 3x configs set warmup_iters=1: one iteration at 0.001x, i.e. no real warm-up.
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[27, 33],
        gamma=0.1)
]

# Gradients clipped to norm 5 in all 3x runs.
optim_wrapper = dict(optimizer=dict(lr=1.5e-4), clip_grad=dict(max_norm=5, norm_type=2))

# 3 images per GPU for Base-3x (8 GPUs assumed).
auto_scale_lr = dict(base_batch_size=24)

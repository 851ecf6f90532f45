# Mask R-CNN + FPN with an ImageNet-1K pre-trained EATFormer-Base, 1x schedule (12 epochs) on COCO.
# Reproduces the official `mask_rcnn_1x_eatformer_base.py` (zhangzjn/EATFormer) with mmdet 3.x:
# 47.2 box AP / 42.8 mask AP published. Everything not stated here is mmdet's R50-FPN Mask R-CNN.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

# Converted with tools/model_converters/eatformer_to_mmevo.py (see README.md).
checkpoint = 'checkpoints/eatformer-base_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmevo.EATFormer',
        arch='base',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.25,
        window_size=14,
        # Multi-GPU training; tools/train.py falls back to BN on CPU or in one process.
        norm_cfg=dict(type='SyncBN', eps=1e-6),
        norm_eval=False,
        frozen_stages=-1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(in_channels=[64, 160, 384, 512]))

train_dataloader = dict(batch_size=4, num_workers=4)

# AdamW, fp16 (dynamic loss scale), gradients clipped to norm 5; no weight decay on the
# backbone's norm layers (the official custom key 'norm'; mmdet's heads have none named so).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(
        _delete_=True, type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=5, norm_type=2),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))

# The official Base-1x warms up for 50 iterations (Tiny/Small: mmdet's 500).
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1)
]

# The official runs use 4 images per GPU; 8 GPUs assumed (as in `dist_train.sh ... 8`).
auto_scale_lr = dict(base_batch_size=32)

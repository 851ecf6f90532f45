# Mask R-CNN + FPN with an ImageNet-1K pre-trained EATFormer-Small, 1x schedule (12 epochs) on COCO.
# Reproduces the official `mask_rcnn_1x_eatformer_small.py` (zhangzjn/EATFormer) with mmdet 3.x:
# 46.1 box AP / 41.9 mask AP published. Everything not stated here is mmdet's R50-FPN Mask R-CNN.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

# Converted with tools/model_converters/eatformer_to_mmevo.py (see README.md).
checkpoint = 'checkpoints/eatformer-small_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmevo.EATFormer',
        arch='small',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.1,
        window_size=14,
        # Multi-GPU training; tools/train.py falls back to BN on CPU or in one process.
        norm_cfg=dict(type='SyncBN', eps=1e-6),
        norm_eval=False,
        frozen_stages=-1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(in_channels=[64, 128, 320, 448]))

train_dataloader = dict(batch_size=4, num_workers=4)

# AdamW, fp16 (dynamic loss scale), no gradient clipping; no weight decay on the backbone's
# norm layers (the official custom key 'norm'; mmdet's heads have no parameter named so).
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(
        _delete_=True, type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.)}))

# The official runs use 4 images per GPU; 8 GPUs assumed (as in `dist_train.sh ... 8`).
auto_scale_lr = dict(base_batch_size=32)

# Mask R-CNN + FPN with an ImageNet-1K pre-trained EdgeFormer-S, 1x schedule (12 epochs) on COCO.
# The EdgeFormer authors published no Mask R-CNN results; the settings are those of mmevo's
# EATFormer 1x configs (AdamW 2e-4, 8 GPUs x 4 images, AMP). Everything not stated here is mmdet's
# R50-FPN Mask R-CNN.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'

# Converted with tools/model_converters/edgeformer_to_mmevo.py (see ../edgeformer/README.md).
checkpoint = 'checkpoints/edgeformer-s_in1k.pth'

# The backbone was trained on BGR images scaled to [0, 1] (no mean / std), as ml-cvnets feeds them.
data_preprocessor = dict(mean=[0., 0., 0.], std=[255., 255., 255.], bgr_to_rgb=False)
model = dict(
    data_preprocessor=data_preprocessor,
    backbone=dict(
        _delete_=True,
        type='mmevo.EdgeFormer',
        arch='s',
        out_indices=(0, 1, 2, 3),
        # Multi-GPU training; tools/train.py falls back to BN on CPU or in one process.
        norm_cfg=dict(type='SyncBN'),
        norm_eval=False,
        frozen_stages=-1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(in_channels=[64, 96, 128, 160]))

train_dataloader = dict(batch_size=4, num_workers=4)

# AdamW, fp16 (dynamic loss scale); no weight decay on the backbone's norm layers.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(
        _delete_=True, type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.))

# 8 GPUs x 4 images.
auto_scale_lr = dict(base_batch_size=32)

# Mask R-CNN + FPN with an ImageNet-1K pre-trained GroupMixFormer-B, 3x schedule (36 epochs) with
# multi-scale + crop augmentation on COCO: mmdet's Swin `ms-crop-3x` recipe with the backbone of
# ./groupmixformer_b_1x.py; see README.md.
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'

# Converted with tools/model_converters/groupmixformer_to_mmevo.py (see README.md).
checkpoint = 'checkpoints/groupmixformer-base_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmevo.GroupMixFormer',
        arch='base',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.5,  # the ImageNet rate
        # any image size: zero-padded to multiples of 32, outputs cropped back
        pad_to_multiple=True,
        out_norm_cfg=dict(type='LN2d', eps=1e-6),
        # official: SyncBN (tools/train.py falls back to BN on CPU / 1 GPU)
        norm_cfg=dict(type='SyncBN'),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(in_channels=[200, 240, 320, 480]))

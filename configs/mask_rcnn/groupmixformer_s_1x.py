# Mask R-CNN + FPN with an ImageNet-1K pre-trained GroupMixFormer-S, 1x schedule (12 epochs) on
# COCO. The authors released no detection code: this is mmdet's Swin Mask R-CNN 1x recipe (AdamW
# 1e-4, weight decay 0.05, 16 images, 1333x800) with the GroupMixFormer backbone; see README.md.
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'

# Converted with tools/model_converters/groupmixformer_to_mmevo.py (see README.md).
checkpoint = 'checkpoints/groupmixformer-small_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmevo.GroupMixFormer',
        arch='small',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,  # the ImageNet rate
        # any image size: zero-padded to multiples of 32, outputs cropped back
        pad_to_multiple=True,
        out_norm_cfg=dict(type='LN2d', eps=1e-6),
        # official: SyncBN (tools/train.py falls back to BN on CPU / 1 GPU)
        norm_cfg=dict(type='SyncBN'),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(in_channels=[80, 160, 320, 320]))

# Mask R-CNN + FPN with an ImageNet-1K pre-trained DWNet-T, 1x schedule (12 epochs) on COCO. Not
# published by the DWNet authors (their detection results are Cascade Mask R-CNN 3x, see
# ../cascade_mask_rcnn): the official downstream DWNet backbone settings with mmdet's Swin-T
# Mask R-CNN 1x recipe, for a like-for-like comparison with Swin-T (42.7 box AP / 39.3 mask AP).
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_1x_coco.py'

# Converted with tools/model_converters/dwnet_to_mmevo.py (see ../cascade_mask_rcnn/README.md).
checkpoint = 'checkpoints/dwnet-tiny_in1k.pth'

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
    neck=dict(in_channels=[96, 192, 384, 768]))

# Swin's AdamW 1e-4 / 0.05; no weight decay on the parameters DWNet's official downstream configs
# exempt (their custom key 'norm': the patch-embedding / merging LayerNorms and output norms).
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        custom_keys={
            'backbone.stem.norm': dict(decay_mult=0.),
            'backbone.stages.1.0.norm': dict(decay_mult=0.),
            'backbone.stages.2.0.norm': dict(decay_mult=0.),
            'backbone.stages.3.0.norm': dict(decay_mult=0.),
            'backbone.out_norms': dict(decay_mult=0.),
        }))

# Mask R-CNN + FPN with DWNet-T, 3x schedule with multi-scale + crop augmentation on COCO. Not
# published: the official downstream DWNet backbone settings with mmdet's Swin-T Mask R-CNN
# ms-crop-3x recipe (Swin-T: 46.0 box AP / 41.6 mask AP).
_base_ = 'mmdet::swin/mask-rcnn_swin-t-p4-w7_fpn_ms-crop-3x_coco.py'

checkpoint = 'checkpoints/dwnet-tiny_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmevo.DWNet',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,
        pad_to_window=True,
        norm_cfg=dict(type='SyncBN'),
        out_norm_cfg=dict(type='SyncBN'),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(in_channels=[96, 192, 384, 768]))

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

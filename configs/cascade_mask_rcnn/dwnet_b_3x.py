# Cascade Mask R-CNN with DWNet-B, 3x: the official
# `cascade_mask_rcnn_dwnet_base_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py`,
# 51.0 box AP / 44.1 mask AP published. As dwnet_t_3x.py but for the backbone.
_base_ = './dwnet_t_3x.py'

checkpoint = 'checkpoints/dwnet-base_in1k.pth'
model = dict(
    backbone=dict(
        arch='base', drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(in_channels=[128, 256, 512, 1024]))

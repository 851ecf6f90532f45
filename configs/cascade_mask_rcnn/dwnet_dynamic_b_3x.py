# Cascade Mask R-CNN with dynamic DWNet-B, 3x: the official
# cascade_mask_rcnn_dynamic_dwnet_base_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py,
# 51.2 box AP / 44.4 mask AP published. As dwnet_b_3x.py with per-sample dynamic kernels.
_base_ = './dwnet_b_3x.py'

checkpoint = 'checkpoints/dwnet-dynamic-base_in1k.pth'
model = dict(
    backbone=dict(
        dynamic=True,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')))

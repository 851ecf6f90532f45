# Cascade Mask R-CNN with dynamic DWNet-T, 3x: the official
# cascade_mask_rcnn_dynamic_dwnet_tiny_patch4_window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco.py,
# 50.5 box AP / 43.7 mask AP published. As dwnet_t_3x.py with per-sample dynamic kernels.
_base_ = './dwnet_t_3x.py'

checkpoint = 'checkpoints/dwnet-dynamic-tiny_in1k.pth'
model = dict(
    backbone=dict(
        dynamic=True,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')))

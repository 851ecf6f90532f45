# Mask R-CNN + FPN with an ImageNet-1K pre-trained EATFormer-Base, 1x schedule (12 epochs) on COCO.
# Reproduces the official `mask_rcnn_1x_eatformer_base.py` (zhangzjn/EATFormer) with mmdet 3.x:
# 47.2 box AP / 42.8 mask AP published. eatformer_t_1x.py with the Base backbone, gradients
# clipped to norm 5 and a 50-iteration warm-up (Tiny/Small: mmdet's 500).
_base_ = './eatformer_t_1x.py'

checkpoint = 'checkpoints/eatformer-base_in1k.pth'  # tools/model_converters/eatformer_to_mmevo.py
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.25, global_window_periods=None,
                  init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 160, 384, 512]))

optim_wrapper = dict(clip_grad=dict(max_norm=5, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[8, 11], gamma=0.1)
]

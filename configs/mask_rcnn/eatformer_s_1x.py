# Mask R-CNN + FPN with an ImageNet-1K pre-trained EATFormer-Small, 1x schedule (12 epochs) on COCO.
# Reproduces the official `mask_rcnn_1x_eatformer_small.py` (zhangzjn/EATFormer) with mmdet 3.x:
# 46.1 box AP / 41.9 mask AP published. The same as eatformer_t_1x.py but for the backbone.
_base_ = './eatformer_t_1x.py'

checkpoint = 'checkpoints/eatformer-small_in1k.pth'  # tools/model_converters/eatformer_to_mmevo.py
model = dict(
    backbone=dict(arch='small', drop_path_rate=0.1, global_window_periods=None,
                  init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 128, 320, 448]))

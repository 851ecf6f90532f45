# Mask R-CNN + FPN with an ImageNet-1K pre-trained EAT-S, 1x schedule (12 epochs) on COCO.
# The same as eat_t_1x.py but for the backbone.
_base_ = './eat_t_1x.py'

checkpoint = 'checkpoints/eat-small_in1k.pth'  # tools/model_converters/eat_to_mmevo.py
model = dict(
    backbone=dict(arch='small', init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 192, 384, 384]))

# Mask R-CNN + FPN with dynamic DWNet-T, 1x (not published): dwnet_t_1x.py with per-sample
# dynamic kernels.
_base_ = './dwnet_t_1x.py'

checkpoint = 'checkpoints/dwnet-dynamic-tiny_in1k.pth'
model = dict(
    backbone=dict(
        dynamic=True,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')))

# Mask R-CNN + FPN with dynamic DWNet-T, 3x multi-scale + crop (not published):
# dwnet_t_ms-crop-3x.py with per-sample dynamic kernels.
_base_ = './dwnet_t_ms-crop-3x.py'

checkpoint = 'checkpoints/dwnet-dynamic-tiny_in1k.pth'
model = dict(
    backbone=dict(
        dynamic=True,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')))

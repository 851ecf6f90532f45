# UperNet with dynamic DWNet-T on ADE20K: the official
# `upernet_dynamic_dwnet_tiny_patch4_window7_512x512_160k_ade20k.py`, 45.7 mIoU published. As the
# DWNet-T config with per-sample dynamic kernels.
_base_ = './dwnet_t_upernet_8xb2-160k_ade20k-512x512.py'

checkpoint = 'checkpoints/dwnet-dynamic-tiny_in1k.pth'
model = dict(
    backbone=dict(
        dynamic=True,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')))

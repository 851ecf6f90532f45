# UperNet with dynamic DWNet-B on ADE20K: the official
# `upernet_dynamic_dwnet_base_patch4_window7_512x512_160k_ade20k.py`, 48.0 mIoU published. As the
# DWNet-B config with per-sample dynamic kernels.
_base_ = './dwnet_b_upernet_8xb2-160k_ade20k-512x512.py'

checkpoint = 'checkpoints/dwnet-dynamic-base_in1k.pth'
model = dict(
    backbone=dict(
        dynamic=True,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')))

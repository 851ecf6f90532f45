# UperNet with DWNet-B on ADE20K: the official
# `upernet_dwnet_base_patch4_window7_512x512_160k_ade20k.py`, 48.3 mIoU published. As the DWNet-T
# config but for the backbone.
_base_ = './dwnet_t_upernet_8xb2-160k_ade20k-512x512.py'

checkpoint = 'checkpoints/dwnet-base_in1k.pth'
model = dict(
    backbone=dict(
        arch='base',
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))

# UperNet with an ImageNet-1K pre-trained EAT-S on ADE20K, 512x512 crops, 160k iterations.
# The same as the EAT-Ti config but for the backbone.
_base_ = './eat_t_upernet_8xb4-160k_ade20k-512x512.py'

checkpoint = 'checkpoints/eat-small_in1k.pth'  # tools/model_converters/eat_to_mmevo.py
model = dict(
    backbone=dict(arch='small', init_cfg=dict(checkpoint=checkpoint)),
    decode_head=dict(in_channels=[96, 192, 384, 384]),
    auxiliary_head=dict(in_channels=384))

# UperNet with an ImageNet-1K pre-trained EATFormer-Base on ADE20K, 512x512 crops, 160k iterations.
# Reproduces the official `eatformer_base_upsernet_ade20k.py` (zhangzjn/EATFormer) with mmseg 1.x:
# 49.3 mIoU published (single scale). The same as the Tiny config but for the backbone.
_base_ = './eatformer_t_upernet_8xb4-160k_ade20k-512x512.py'

checkpoint = 'checkpoints/eatformer-base_in1k.pth'  # tools/model_converters/eatformer_to_mmevo.py
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.25, global_window_periods=None,
                  init_cfg=dict(checkpoint=checkpoint)),
    decode_head=dict(in_channels=[64, 160, 384, 512]),
    auxiliary_head=dict(in_channels=384))

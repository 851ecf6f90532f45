# UperNet with an ImageNet-1K pre-trained DWNet-T on ADE20K, 512x512 crops, 160k iterations.
# Reproduces the official `upernet_dwnet_tiny_patch4_window7_512x512_160k_ade20k.py`
# (Atten4Vis/DemystifyLocalViT) with mmseg 1.x: 45.5 mIoU published. The official recipe is
# Swin's, so mmseg's Swin-T UperNet config is the base; only the backbone and what the official
# mmcv 1.x schedule / optimizer keys do differently are stated.
_base_ = 'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'

# Converted with tools/model_converters/dwnet_to_mmevo.py (see README.md).
checkpoint = 'checkpoints/dwnet-tiny_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmevo.DWNet',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.3,
        # the official downstream backbone: blocks pad their maps to multiples of 7, SyncBN
        # everywhere and on the four outputs (tools/train.py falls back to BN on CPU / 1 GPU)
        pad_to_window=True,
        norm_cfg=dict(type='SyncBN'),
        out_norm_cfg=dict(type='SyncBN'),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    decode_head=dict(in_channels=[96, 192, 384, 768], num_classes=150),
    auxiliary_head=dict(in_channels=384, num_classes=150))

# AdamW 6e-5, weight decay 0.01, none on the parameters the official custom key 'norm' matched
# (the patch-embedding / merging LayerNorms and the output norms; the blocks' BatchNorms are named
# bn* officially and were decayed).
optim_wrapper = dict(
    paramwise_cfg=dict(
        _delete_=True,
        custom_keys={
            'backbone.stem.norm': dict(decay_mult=0.),
            'backbone.stages.1.0.norm': dict(decay_mult=0.),
            'backbone.stages.2.0.norm': dict(decay_mult=0.),
            'backbone.stages.3.0.norm': dict(decay_mult=0.),
            'backbone.out_norms': dict(decay_mult=0.),
        }))

# Poly (power 1) decay to 0 over all 160k iterations, multiplied by a linear warm-up from 1e-6x over
# the first 1500 (mmcv 1.x 'poly' + 'linear' warm-up of the official runs: the two overlap, where
# mmseg's Swin config starts the poly decay after the warm-up).
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=0, end=160000, by_epoch=False)
]

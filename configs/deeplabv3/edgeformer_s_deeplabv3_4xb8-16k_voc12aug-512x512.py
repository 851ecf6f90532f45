# DeepLabv3 (output stride 16) with an ImageNet-1K pre-trained EdgeFormer-S on PASCAL VOC 2012 aug,
# 512x512 crops: the paper's segmentation setting (official
# config/segmentation/edgeformer/deeplabv3_edgeformer_s.yaml, ml-cvnets) on mmseg's ASPPHead.
# Everything not stated here is mmseg's deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py.
_base_ = 'mmseg::deeplabv3/deeplabv3_r50-d8_4xb4-20k_voc12aug-512x512.py'

# Converted with tools/model_converters/edgeformer_to_mmevo.py (see README.md).
checkpoint = 'checkpoints/edgeformer-s_in1k.pth'
crop_size = (512, 512)
# The backbone was trained on BGR images scaled to [0, 1] (no mean / std), as ml-cvnets feeds them.
data_preprocessor = dict(
    size=crop_size, mean=[0., 0., 0.], std=[255., 255., 255.], bgr_to_rgb=False)
model = dict(
    data_preprocessor=data_preprocessor,
    # EncoderDecoder would push this into the backbone.
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='mmevo.EdgeFormer',
        arch='s',
        out_indices=(0, 1, 2, 3),
        # the last stage keeps stride 16 (official output_stride 16)
        output_stride=16,
        norm_cfg=dict(type='SyncBN'),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    # ASPP on the stride-16 map: 256 channels, rates 6 / 12 / 18 (+ 1x1 and image pooling),
    # dropout 0.1; no auxiliary head
    decode_head=dict(in_channels=160, in_index=3, channels=256, dilations=(1, 6, 12, 18)),
    auxiliary_head=None)

# Official augmentation: short side resized to 384-768, 512x512 crop, flip (no colour jitter).
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(2048, 512), ratio_range=(0.75, 1.5), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
voc = dict(type='PascalVOCDataset', data_root='data/VOCdevkit/VOC2012', pipeline=train_pipeline)
# 4 GPUs x 8 images
train_dataloader = dict(
    batch_size=8,
    dataset=dict(datasets=[
        dict(voc, data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
             ann_file='ImageSets/Segmentation/train.txt'),
        dict(voc, data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassAug'),
             ann_file='ImageSets/Segmentation/aug.txt'),
    ]))

# AdamW 9e-4, weight decay 0.01, 10x learning rate on the head (official lr_multiplier);
# 50 epochs of the 10,582-image train-aug set at 32 images = 16,500 iterations; 500 warm-up
# iterations from lr/10, then cosine to 1e-6.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=9e-4, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={'decode_head': dict(lr_mult=10.)}))
max_iters = 16500
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=500),
    dict(type='CosineAnnealingLR', T_max=max_iters, eta_min=1e-6, by_epoch=False, begin=0,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=1650)
default_hooks = dict(checkpoint=dict(interval=1650))
custom_hooks = [dict(type='EMAHook', momentum=0.0005, priority='ABOVE_NORMAL')]

# UperNet with an ImageNet-1K pre-trained GroupMixFormer-S on ADE20K, 512x512 crops, 160k
# iterations. The authors released no segmentation code: mmseg's Swin UperNet recipe (AdamW, weight
# decay 0.01, poly decay after a 1500-iteration warm-up) with the GroupMixFormer backbone, at 4
# images per GPU with the learning rate scaled linearly (Swin: 6e-5 for 16 images); see README.md.
_base_ = 'mmseg::swin/swin-tiny-patch4-window7-in1k-pre_upernet_8xb2-160k_ade20k-512x512.py'

# Converted with tools/model_converters/groupmixformer_to_mmevo.py (see README.md).
checkpoint = 'checkpoints/groupmixformer-small_in1k.pth'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmevo.GroupMixFormer',
        arch='small',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.2,  # the ImageNet rate
        # any image size: zero-padded to multiples of 32, outputs cropped back
        pad_to_multiple=True,
        out_norm_cfg=dict(type='LN2d', eps=1e-6),
        # official: SyncBN (tools/train.py falls back to BN on CPU / 1 GPU)
        norm_cfg=dict(type='SyncBN'),
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    decode_head=dict(in_channels=[80, 160, 320, 320], num_classes=150),
    auxiliary_head=dict(in_channels=320, num_classes=150))

# 8 GPUs x 4 images (the name's 8xb4; rescale with --auto-scale-lr)
train_dataloader = dict(batch_size=4)
optim_wrapper = dict(optimizer=dict(lr=6e-5 * 32 / 16))
auto_scale_lr = dict(base_batch_size=32)

# DWNet ImageNet-1k training recipe (official config.py / main.py of Atten4Vis/DemystifyLocalViT,
# which is Swin Transformer's recipe), in mmpretrain terms: mmpretrain's Swin bases hold the same
# augmentation, optimizer and schedule. The per-variant configs in configs/dwnet/ set the arch.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    # official: plain BatchNorm (per-GPU statistics) in classification
    backbone=dict(type='mmevo.DWNet', arch='tiny'),
    neck=None,
    head=dict(
        type='mmevo.DWNetClsHead',
        num_classes=1000,
        in_channels=768,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8),
                             dict(type='CutMix', alpha=1.0)]))

# 8 GPUs x 128 images; lr 5e-4 per 512 images (official linear scaling) = 1e-3, as the base.
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

optim_wrapper = dict(clip_grad=dict(max_norm=5.0))
randomness = dict(seed=0)

# EAT ImageNet-1k training recipe (official main.py defaults and README training command, in
# mmpretrain terms; every setting's source is in configs/eat/README.md). The per-variant configs
# in configs/eat/ inherit this and set the arch.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(type='mmevo.EAT', arch='tiny', img_size=224),  # drop path 0.1 (arch)
    neck=None,
    head=dict(
        type='mmevo.ClassAttentionHead',
        num_classes=1000,
        in_channels=192,
        num_heads=4,
        num_blocks=2,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8),
                             dict(type='CutMix', alpha=1.0)]))

# 8 GPUs x 128 images (README command); main.py scales lr 5e-4 by total batch / 512.
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

optim_wrapper = dict(
    optimizer=dict(lr=5e-4 * 1024 / 512, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    # timm's create_optimizer: no weight decay on 1-D parameters and biases, and on the model's
    # no_weight_decay() = pos_embed, cls_token
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        flat_decay_mult=0.,
        custom_keys={'.pos_embed': dict(decay_mult=0.),
                     '.cls_token': dict(decay_mult=0.)}),
    clip_grad=dict(max_norm=1.0))

# timm's CosineLRScheduler stepped per epoch: 5 warm-up epochs linear from 1e-6, cosine over the
# 300 epochs to 1e-5 (chained as below, within 0.05% of timm's value at every epoch).
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6 / 1e-3, by_epoch=True, begin=0, end=6),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=0, end=300),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
auto_scale_lr = dict(base_batch_size=1024)
randomness = dict(seed=0)

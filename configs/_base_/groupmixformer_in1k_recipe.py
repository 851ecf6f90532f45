# GroupMixFormer ImageNet-1k training recipe (official config.py, configs/*.yaml, train.py, in
# mmpretrain terms; every setting's source is in configs/groupmixformer/README.md).
# The per-variant configs in configs/groupmixformer/ inherit this and set the arch.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmevo.GroupMixFormer',
        arch='small',
        norm_cfg=dict(type='SyncBN')),  # official: SyncBN (BN on 1 process / CPU)
    neck=None,
    head=dict(
        type='mmevo.GroupMixFormerClsHead',
        num_classes=1000,
        in_channels=320,
        norm_cfg=dict(type='SyncBN'),
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8),
                             dict(type='CutMix', alpha=1.0)]))

# 8 GPUs x 64 images (the official README); lr 5e-4 at a total batch of 512.
train_dataloader = dict(batch_size=64)
val_dataloader = dict(batch_size=64)
test_dataloader = val_dataloader

optim_wrapper = dict(
    optimizer=dict(lr=5e-4, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    # no weight decay on 1-D parameters (norms, biases)
    paramwise_cfg=dict(
        _delete_=True, norm_decay_mult=0., bias_decay_mult=0., flat_decay_mult=0.),
    clip_grad=dict(max_norm=5.0))

# timm's CosineLRScheduler, stepped per iteration: the cosine runs over all 300 epochs to lr/100,
# the first 20 epochs replaced by a linear warm-up from lr/1000. The two schedulers overlap.
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=5e-6, by_epoch=True, begin=0, end=300,
         convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
auto_scale_lr = dict(base_batch_size=512)
randomness = dict(seed=0)

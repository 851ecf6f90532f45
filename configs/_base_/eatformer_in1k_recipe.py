# EATFormer ImageNet-1k training recipe (official configs/classification.py, in mmpretrain terms).
# The per-variant configs in configs/eatformer/ inherit this and set the arch.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]

model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='mmevo.EATFormer',
        arch='tiny',
        norm_cfg=dict(type='SyncBN', eps=1e-6)),  # official: SyncBN (BN on 1 process / CPU)
    neck=None,
    head=dict(
        type='mmevo.EATFormerClsHead',
        num_classes=1000,
        in_channels=256,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8),
                             dict(type='CutMix', alpha=1.0)]))

# 8 GPUs x 128 images; the official recipe is lr 5e-4 at a total batch of 2048, scaled linearly.
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = val_dataloader

optim_wrapper = dict(
    optimizer=dict(lr=5e-4 * 1024 / 2048, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    # no weight decay on 1-D parameters (norms, biases, layer scales, op weights) and cls_token
    paramwise_cfg=dict(
        _delete_=True,
        norm_decay_mult=0.,
        bias_decay_mult=0.,
        flat_decay_mult=0.,
        custom_keys={'.cls_token': dict(decay_mult=0.)}),
    clip_grad=dict(max_norm=5.0))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=10,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=5e-4 * 1024 / 2048 / 100, by_epoch=True, begin=10,
         end=300, convert_to_iter_based=True),
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
auto_scale_lr = dict(base_batch_size=1024)
randomness = dict(seed=42)

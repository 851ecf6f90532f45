# Mask R-CNN + FPN with an ImageNet-1K pre-trained EAT-Ti, 3x schedule (36 epochs) with multi-scale
# + crop augmentation on COCO: the recipe of eatformer_t_3x.py with the backbone of eat_t_1x.py.
_base_ = './eatformer_t_3x.py'

checkpoint = 'checkpoints/eat-tiny_in1k.pth'  # tools/model_converters/eat_to_mmevo.py
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmevo.EAT',
        arch='tiny',
        out_indices=(2, 5, 8, 11),
        pyramid=True,
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(in_channels=[48, 96, 192, 192]))

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.),
                                    'pos_embed': dict(decay_mult=0.)}))

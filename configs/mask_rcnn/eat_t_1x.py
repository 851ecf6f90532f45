# Mask R-CNN + FPN with an ImageNet-1K pre-trained EAT-Ti, 1x schedule (12 epochs) on COCO.
# EAT has no official detection configs or results: this is the recipe of eatformer_t_1x.py (the
# authors' successor model) with the EAT backbone in its dense mode: the outputs of blocks
# 3/6/9/12 rescaled to strides 4/8/16/32 by ViTDet's simple pyramid (README.md).
_base_ = './eatformer_t_1x.py'

checkpoint = 'checkpoints/eat-tiny_in1k.pth'  # tools/model_converters/eat_to_mmevo.py
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmevo.EAT',
        arch='tiny',
        out_indices=(2, 5, 8, 11),
        pyramid=True,
        drop_path_rate=0.1,  # the pre-training rate (main.py)
        # the pyramid and output norms are new: they start from their initialisation (named
        # in a warning); every other key must be in the checkpoint
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    neck=dict(in_channels=[48, 96, 192, 192]))

# as the base, plus no weight decay on the position embeddings (as in pre-training)
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.),
                                    'pos_embed': dict(decay_mult=0.)}))

# UperNet with an ImageNet-1K pre-trained EAT-Ti on ADE20K, 512x512 crops, 160k iterations.
# EAT has no official segmentation configs or results: this is the recipe of
# eatformer_t_upernet_8xb4-160k_ade20k-512x512.py (the authors' successor model) with the EAT
# backbone in its dense mode: the outputs of blocks 3/6/9/12 rescaled to strides 4/8/16/32 by
# ViTDet's simple pyramid (see configs/mask_rcnn/README.md).
_base_ = './eatformer_t_upernet_8xb4-160k_ade20k-512x512.py'

checkpoint = 'checkpoints/eat-tiny_in1k.pth'  # tools/model_converters/eat_to_mmevo.py
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmevo.EAT',
        arch='tiny',
        out_indices=(2, 5, 8, 11),
        pyramid=True,
        drop_path_rate=0.1,  # the pre-training rate (main.py)
        # the pyramid and output norms start from their initialisation (named in a warning)
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint, prefix='backbone.')),
    decode_head=dict(in_channels=[48, 96, 192, 192]),
    # the auxiliary FCN head reads the stride-16 level (in_index=2)
    auxiliary_head=dict(in_channels=192))

optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.),
                                    'pos_embed': dict(decay_mult=0.)}))

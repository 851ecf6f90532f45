# ParC-ConvNeXt-XT (GCC-ConvNeXt, hkzhang91/ParC-Net ParC_ConvNets/ParC_convnext.py), trained with
# the ConvNeXt recipe as the authors did (mmpretrain's convnext-tiny_32xb128_in1k). No official
# weights exist. 224x224: the ParC kernels have the stage lengths 56/28/14/7.
_base_ = 'mmpretrain::convnext/convnext-tiny_32xb128_in1k.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmevo.GCCConvNeXt',
        arch='xt',
        drop_path_rate=0.1,
        # official head: LN(mean_hw(x)) -> Linear
        gap_before_final_norm=True),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(in_channels=384))

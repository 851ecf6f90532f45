# Mask R-CNN + FPN with an ImageNet-1K pre-trained EATFormer-Base, 3x schedule (36 epochs) with
# multi-scale + crop augmentation on COCO. Reproduces the official
# `mask_rcnn_3x_ms_eatformer_base.py` (zhangzjn/EATFormer) with mmdet 3.x: 49.0 box AP /
# 44.2 mask AP published. eatformer_t_3x.py with the Base backbone, lr 1.5e-4 and 3 images per
# GPU (8 GPUs assumed).
_base_ = './eatformer_t_3x.py'

checkpoint = 'checkpoints/eatformer-base_in1k.pth'  # tools/model_converters/eatformer_to_mmevo.py
model = dict(
    backbone=dict(arch='base', drop_path_rate=0.25, global_window_periods=None,
                  init_cfg=dict(checkpoint=checkpoint)),
    neck=dict(in_channels=[64, 160, 384, 512]))

train_dataloader = dict(batch_size=3, num_workers=3)
optim_wrapper = dict(optimizer=dict(lr=1.5e-4))
auto_scale_lr = dict(base_batch_size=24)

_base_ = '../_base_/dwnet_in1k_recipe.py'

model = dict(backbone=dict(arch='base'), head=dict(in_channels=1024))

# Official base runs: 16 GPUs x 64 images, gradients accumulated over 2 steps (2048 images per
# update); lr, warm-up and minimum lr scale with it: 2e-3, from 2e-6, cosine to 2e-5.
train_dataloader = dict(batch_size=64)
val_dataloader = dict(batch_size=64)
test_dataloader = val_dataloader
optim_wrapper = dict(optimizer=dict(lr=2e-3), accumulative_counts=2)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=2e-5, by_epoch=True, begin=20)
]

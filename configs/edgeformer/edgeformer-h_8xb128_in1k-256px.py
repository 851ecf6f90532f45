_base_ = '../_base_/edgeformer_in1k_recipe.py'

# EdgeFormer-H (official scale_h): 5x5 stem, 960-channel conv_1x1_exp; weight decay 0.05.
model = dict(backbone=dict(arch='h'), head=dict(in_channels=432))
optim_wrapper = dict(optimizer=dict(weight_decay=0.05))

_base_ = '../_base_/groupmixformer_in1k_recipe.py'

model = dict(backbone=dict(arch='large'), head=dict(in_channels=480))

_base_ = '../_base_/eatformer_in1k_recipe.py'

model = dict(backbone=dict(arch='mini'), head=dict(in_channels=320))

_base_ = '../_base_/eatformer_in1k_recipe.py'

model = dict(backbone=dict(arch='tiny'), head=dict(in_channels=256))

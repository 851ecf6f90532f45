_base_ = '../_base_/eat_in1k_recipe.py'

model = dict(backbone=dict(arch='medium'), head=dict(in_channels=576, num_heads=8))

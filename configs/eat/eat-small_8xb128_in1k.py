_base_ = '../_base_/eat_in1k_recipe.py'

model = dict(backbone=dict(arch='small'), head=dict(in_channels=384, num_heads=6))

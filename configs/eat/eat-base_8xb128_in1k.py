_base_ = '../_base_/eat_in1k_recipe.py'

model = dict(backbone=dict(arch='base'), head=dict(in_channels=768, num_heads=12))

_base_ = '../_base_/eat_in1k_recipe.py'

model = dict(backbone=dict(arch='tiny'), head=dict(in_channels=192, num_heads=4))

_base_ = '../_base_/dwnet_in1k_recipe.py'

model = dict(backbone=dict(arch='tiny'), head=dict(in_channels=768))

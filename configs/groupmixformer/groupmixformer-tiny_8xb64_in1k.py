_base_ = '../_base_/groupmixformer_in1k_recipe.py'

model = dict(backbone=dict(arch='tiny'), head=dict(in_channels=240))

_base_ = '../_base_/edgeformer_in1k_recipe.py'

# EdgeFormer-XS: additive local-global fusion (official scale_xs).
model = dict(backbone=dict(arch='xs'), head=dict(in_channels=160))

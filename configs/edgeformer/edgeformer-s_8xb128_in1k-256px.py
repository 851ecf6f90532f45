_base_ = '../_base_/edgeformer_in1k_recipe.py'

# EdgeFormer-S (official scale_s): 5.04M parameters, 1.74G MAdds at 256x256, 78.6% top-1.
model = dict(backbone=dict(arch='s'), head=dict(in_channels=160))

# EAT-Small at 384x384: the same as eat-tiny_8xb128_in1k-384px.py but for the arch.
_base_ = './eat-tiny_8xb128_in1k-384px.py'

model = dict(backbone=dict(arch='small'), head=dict(in_channels=384, num_heads=6))

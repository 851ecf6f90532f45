_base_ = './dwnet-tiny_8xb128_in1k.py'

model = dict(backbone=dict(dynamic=True))

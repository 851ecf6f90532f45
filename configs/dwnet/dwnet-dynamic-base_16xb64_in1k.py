_base_ = './dwnet-base_16xb64_in1k.py'

model = dict(backbone=dict(dynamic=True))

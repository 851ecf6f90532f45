# Copyright (c) mmevo contributors. All rights reserved.
"""Convert an official EAT checkpoint (TencentYoutuResearch/BaseArchitecture-EAT) to mmevo.

    python tools/model_converters/eat_to_mmevo.py SRC DST

SRC: a raw state dict or the official checkpoint holding it under 'model' (or 'state_dict'),
e.g. the released EAT-Ti.pth ... EAT-S-384.pth. DST gets
``dict(state_dict={'backbone.*', 'head.*'}, meta=...)``: load it as an mmpretrain classifier
checkpoint (``load_from`` / ``tools/test.py``) or in mmdet/mmseg through
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``. The tokenizer's two
integer permutation tensors are dropped (the port's patch convolution needs none); keys of
another model (e.g. the unreleased distilled variants' ``dist_token``) are an error naming them.
SRC is read with ``weights_only=True`` (nothing in it runs) and never modified.
"""
from mmevo.utils.converters.cli import run

if __name__ == '__main__':
    run('eat')

# Copyright (c) mmevo contributors. All rights reserved.
"""Convert an official EATFormer checkpoint (zhangzjn/EATFormer) to mmevo.

    python tools/model_converters/eatformer_to_mmevo.py SRC DST [--ema]

SRC: a raw state dict or a checkpoint holding it under 'net' (or 'net_E' with --ema), 'model' or
'state_dict'; classification (EATFormer) or downstream backbone (EAFormer) weights. DST gets
``dict(state_dict={'backbone.*', 'head.*'}, meta=...)``: load it as an mmpretrain classifier
checkpoint (``load_from`` / ``tools/test.py``) or in mmdet/mmseg through
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``.
SRC is read with ``weights_only=True`` (nothing in it runs) and never modified.
"""
from mmevo.utils.converters.cli import run

if __name__ == '__main__':
    run('eatformer')

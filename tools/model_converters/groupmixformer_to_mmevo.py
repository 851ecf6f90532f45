# Copyright (c) mmevo contributors. All rights reserved.
"""Convert an official GroupMixFormer checkpoint (AILab-CVC/GroupMixFormer) to mmevo.

    python tools/model_converters/groupmixformer_to_mmevo.py SRC DST

SRC: a raw state dict or the official checkpoint holding it under 'model' (or 'state_dict').
DST gets ``dict(state_dict={'backbone.*', 'head.*'}, meta=...)``: load it as an mmpretrain
classifier checkpoint (``load_from`` / ``tools/test.py``) or in mmdet/mmseg through
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``. Keys that no official
GroupMixFormer has are an error that names them. SRC is read with ``weights_only=True``
(nothing in it runs) and never modified.
"""
from mmevo.utils.converters.cli import run

if __name__ == '__main__':
    run('groupmixformer')

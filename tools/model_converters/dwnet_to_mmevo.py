# Copyright (c) mmevo contributors. All rights reserved.
"""Convert an official DWNet checkpoint (Atten4Vis/DemystifyLocalViT) to mmevo.

    python tools/model_converters/dwnet_to_mmevo.py SRC DST [--with-heads]

SRC: a classification checkpoint (static, dynamic or i-dynamic DWNet; the weights under 'model',
or a raw state dict), or a detection / segmentation checkpoint (the detector or segmentor under
'state_dict' with 'backbone.' keys, or a raw backbone state dict; necks and heads are dropped, or
kept under their own names with --with-heads to evaluate the released detector / segmentor).
DST gets ``dict(state_dict={'backbone.*', 'head.*'}, meta=...)``: load it as an mmpretrain
classifier checkpoint (``load_from`` / ``tools/test.py``) or in mmdet/mmseg through
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``. Keys that no official
DWNet has are an error naming them. SRC is read with ``weights_only=True`` (nothing in it runs)
and never modified.
"""
from mmevo.utils.converters.cli import run

if __name__ == '__main__':
    run('dwnet')

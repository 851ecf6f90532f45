# Copyright (c) mmevo contributors. All rights reserved.
"""Convert an official EdgeFormer / ParC-Net checkpoint (hkzhang91/EdgeFormer) to mmevo.

    python tools/model_converters/edgeformer_to_mmevo.py SRC DST

SRC: the released raw (EMA-averaged) state dict ``checkpoint_ema_avg.pt``, or a checkpoint holding
it under 'model' or 'state_dict'; the ``encoder.*`` backbone of an official SSD / DeepLabv3
checkpoint is taken too (their task heads are dropped). The 18 ``residual.*`` keys of every
official checkpoint alias ``layer_5.0.*``: they are checked to be equal and dropped. DST gets
``dict(state_dict={'backbone.*', 'head.*'}, meta=...)``: load it as an mmpretrain classifier
checkpoint or in mmdet/mmseg through ``init_cfg=dict(type='Pretrained', checkpoint=DST,
prefix='backbone.')``. SRC is read with ``weights_only=True`` (nothing in it runs) and never
modified.
"""
from mmevo.utils.converters.cli import run

if __name__ == '__main__':
    run('edgeformer')

# Copyright (c) mmevo contributors. All rights reserved.
"""Convert an official EATFormer checkpoint (zhangzjn/EATFormer) to mmevo.

    python tools/model_converters/eatformer_to_mmevo.py SRC DST [--ema]

SRC: a raw state dict or a checkpoint holding it under 'net' (or 'net_E' with --ema), 'model' or
'state_dict'; classification (EATFormer) or downstream backbone (EAFormer) weights. DST gets
``dict(state_dict={'backbone.*', 'head.*'}, meta=...)``: load it as an mmpretrain classifier
checkpoint (``load_from`` / ``tools/test.py``) or in mmdet/mmseg through
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``.
The source is read with ``weights_only=True``: nothing in it is executed.
"""
import argparse
import os
import os.path as osp
import sys

import torch

from mmevo.utils.checkpoint import load_checkpoint_file
from mmevo.utils.converters import ConversionError, convert_eatformer, save_converted


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official checkpoint')
    parser.add_argument('dst', help='output path')
    parser.add_argument('--ema', action='store_true', help="take the EMA weights 'net_E'")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    checkpoint = load_checkpoint_file(args.src, map_location='cpu')
    try:
        state_dict = convert_eatformer(checkpoint, use_ema=args.ema)
    except ConversionError as err:
        print(f'error: {args.src}: {err}', file=sys.stderr)
        return 1
    if osp.dirname(args.dst):
        os.makedirs(osp.dirname(args.dst), exist_ok=True)
    num_params = sum(v.numel() for k, v in state_dict.items()
                     if v.is_floating_point() and not k.endswith(('running_mean', 'running_var')))
    parts = sorted({k.split('.')[0] for k in state_dict})
    save_converted(state_dict, args.dst,
                   meta=dict(converted_from=osp.basename(args.src), family='eatformer',
                             ema=args.ema, torch=str(torch.__version__)))
    print(f'converted {len(state_dict)} tensors ({num_params:,} parameters; parts: '
          f'{", ".join(parts)}) -> {args.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())

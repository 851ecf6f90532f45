# Copyright (c) mmevo contributors. All rights reserved.
"""The command line of every ``tools/model_converters/<family>_to_mmevo.py``.

``python tools/model_converters/<family>_to_mmevo.py SRC DST [family options]`` reads SRC with
:func:`mmevo.utils.checkpoint.read_checkpoint` (``weights_only``: nothing in it runs), converts
it with the family's registered converter and writes ``dict(state_dict=..., meta=...)`` to DST.
SRC is never modified: DST may not be SRC (after resolving links), and DST is written to a
temporary file beside it and renamed only when complete.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

import torch

from ..checkpoint import CheckpointError, UnsafeCheckpointError, read_checkpoint
from .base import ConversionError, count_parameters, save_converted
from .registry import get_converter


def _same_file(src: str, dst: str) -> bool:
    if osp.realpath(src) == osp.realpath(dst):
        return True
    return osp.exists(dst) and osp.exists(src) and osp.samefile(src, dst)


def main(family: str, argv: Optional[List[str]] = None) -> int:
    """Run the converter CLI of ``family``; returns the exit status (0: converted)."""
    conv = get_converter(family)
    parser = argparse.ArgumentParser(
        prog=f'{conv.family}_to_mmevo.py',
        description=f'Convert an official {conv.model_name} checkpoint to mmevo '
        f'(backbone.* / head.* keys for mmevo.{conv.backbone}).')
    parser.add_argument('src', help='official checkpoint (raw state dict or training checkpoint)')
    parser.add_argument('dst', help='output path (never SRC itself)')
    for flags, kwargs in conv.cli_options:
        parser.add_argument(*flags, **kwargs)
    args = parser.parse_args(argv)
    options = {k: v for k, v in vars(args).items() if k not in ('src', 'dst')}

    if _same_file(args.src, args.dst):
        print(f'error: DST is SRC ({osp.realpath(args.src)}): refusing to overwrite the '
              f'official checkpoint; choose another output path', file=sys.stderr)
        return 2
    try:
        checkpoint = read_checkpoint(args.src, map_location='cpu')
        state_dict = conv.convert(checkpoint, **options)
    except (FileNotFoundError, CheckpointError, UnsafeCheckpointError, ConversionError) as err:
        print(f'error: {args.src}: {err}', file=sys.stderr)
        return 1
    previous = osp.getsize(args.dst) if osp.isfile(args.dst) else None
    meta = dict(converted_from=osp.basename(args.src), family=conv.family,
                torch=str(torch.__version__), **options)
    save_converted(state_dict, args.dst, meta=meta)
    parts = sorted({k.split('.')[0] for k in state_dict})
    print(f'converted {len(state_dict)} tensors ({count_parameters(state_dict):,} parameters; '
          f'parts: {", ".join(parts)}) -> {args.dst}')
    if previous is not None:
        print(f'note: overwrote the existing {args.dst} ({previous:,} bytes)')
    return 0


def run(family: str) -> None:
    """Entry point of the thin per-family scripts: ``sys.exit(main(family))``."""
    sys.exit(main(family))


__all__ = ['main', 'run']

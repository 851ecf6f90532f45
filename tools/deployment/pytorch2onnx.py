# Copyright (c) mmevo contributors. All rights reserved.
"""Export a config's model to ONNX (dynamic batch) and check it against PyTorch with ONNX Runtime.

Classification configs export the whole classifier (backbone + neck + head, output ``logits``);
detection and segmentation configs, or ``--backbone-only``, export the backbone (outputs
``stage{i}`` per ``out_indices``). Examples::

    python tools/deployment/pytorch2onnx.py configs/eatformer/eatformer-tiny_8xb128_in1k.py \\
        eatformer-tiny.pth --out eatformer-tiny.onnx
    python tools/deployment/pytorch2onnx.py configs/mask_rcnn/eatformer_t_1x.py --shape 800 1280

The check runs the file with ONNX Runtime at batch 1 and 3 and passes when, per output,
``max |onnx - torch| <= atol + rtol * max |torch|`` (defaults 1e-4 and 1e-4). The export and
its limits are described in ``mmevo/deployment/onnx.py``; it needs the optional packages
``onnx``, ``onnxruntime`` and ``onnxscript`` (``requirements/optional.txt``).
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config, DictAction

import mmevo  # noqa: F401  (mmevo:: bases and safe loading, before any config is parsed)
from mmevo.deployment.onnx import (
    ATOL,
    DEFAULT_OPSET,
    MAX_OPSET,
    MIN_OPSET,
    RTOL,
    ExportError,
    export_config,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Export a config\'s model to ONNX and check it with ONNX Runtime')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', nargs='?', help='checkpoint to load (default: none, '
                        'random weights)')
    parser.add_argument('--out', help='ONNX file to write (default: work_dirs/onnx/'
                        '<config name>[_backbone].onnx)')
    parser.add_argument(
        '--shape', type=int, nargs='+', help='input H W (one value: square). Default: the '
        'test pipeline\'s crop for classification configs, 800x1280 for mmdet, 512x2048 for '
        'mmseg')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET,
                        help=f'ONNX opset, {MIN_OPSET} to {MAX_OPSET} (default {DEFAULT_OPSET})')
    parser.add_argument('--dynamic-batch', action=argparse.BooleanOptionalAction, default=True,
                        help='symbolic batch axis named "batch" (default: on)')
    parser.add_argument('--check', action=argparse.BooleanOptionalAction, default=True,
                        help='compare ONNX Runtime with PyTorch (default: on)')
    parser.add_argument('--backbone-only', action='store_true',
                        help='export the backbone of a classification config')
    parser.add_argument('--batch-size', type=int, default=2,
                        help='batch of the example input (default 2; the fixed batch with '
                        '--no-dynamic-batch)')
    parser.add_argument('--atol', type=float, default=ATOL, help=f'default {ATOL:g}')
    parser.add_argument('--rtol', type=float, default=RTOL,
                        help=f'relative to max |torch| per output, default {RTOL:g}')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, e.g. model.backbone.out_indices="[0,1,2,3]"')
    args = parser.parse_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error('--shape takes H W or a single size')
    if args.batch_size < 1 or (args.dynamic_batch and args.batch_size < 2):
        parser.error(f'--batch-size must be >= 2 with a dynamic batch (torch.export '
                     f'specializes a batch of 1) and >= 1 without, got {args.batch_size}')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    backbone_only = args.backbone_only or cfg.get('default_scope') != 'mmpretrain'
    name = osp.splitext(osp.basename(args.config))[0]
    out = args.out or osp.join('work_dirs', 'onnx',
                               name + ('_backbone' if backbone_only else '') + '.onnx')
    try:
        report = export_config(
            cfg, out, checkpoint=args.checkpoint, input_size=args.shape, opset=args.opset,
            dynamic_batch=args.dynamic_batch, check=args.check,
            backbone_only=args.backbone_only, batch_size=args.batch_size, atol=args.atol,
            rtol=args.rtol)
    except (ExportError, ImportError) as err:
        sys.exit(f'pytorch2onnx: {err}')
    batch = 'dynamic ("batch")' if args.dynamic_batch else str(args.batch_size)
    print(f'Exported {report["model"]} of {args.config} to {out}')
    print(f'  opset {report["opset"]}, input "input" (C, H, W) = '
          f'{report["input_shape"][1:]} with batch {batch}, outputs: '
          f'{", ".join(report["outputs"])}')
    check = report.get('check')
    if check is not None:
        print('ONNX Runtime vs PyTorch:')
        print(check.summary(), flush=True)
        if not check.passed:
            sys.exit(1)
    return report


if __name__ == '__main__':
    main()

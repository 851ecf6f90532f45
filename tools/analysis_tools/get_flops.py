# Copyright (c) mmevo contributors. All rights reserved.
"""Parameters and FLOPs (multiply-adds, as the papers count) of a config's model.

No dataset is needed: the input is synthetic. Works for mmpretrain, mmdet and mmseg configs
(the task comes from ``default_scope``). Examples::

    python tools/analysis_tools/get_flops.py configs/eatformer/eatformer-tiny_8xb128_in1k.py
    python tools/analysis_tools/get_flops.py configs/mask_rcnn/eatformer_t_1x.py --backbone-only
    python tools/analysis_tools/get_flops.py configs/cascade_mask_rcnn/dwnet_t_3x.py \\
        --det-rois mmdet2   # DWNet's published 730 G (RoI heads as mmdet 2.x counted them)
    python tools/analysis_tools/get_flops.py configs/eatformer/eatformer-base_8xb128_in1k.py \\
        --cfg-options model.backbone.window_size="[7,7,14,7]"   # README's Base (global stage 3)
    python tools/analysis_tools/get_flops.py configs/edgeformer/edgeformer-s_8xb128_in1k-256px.py \\
        --shape 256 --convention ml-cvnets   # EdgeFormer's published 1.74 G MAdds

Two figures are printed: all multiply-adds (fvcore's convention, attention matrix products and
``grid_sample`` included: the published classification numbers), and the figure without attention
matrix products and sampling (mmcv's module-hook convention: the published detection and
segmentation numbers). ``--convention ml-cvnets`` adds the count of ml-cvnets' module profiler,
the convention of the published EdgeFormer / ParC-Net MAdds (no BatchNorm, the GCC block's
channel attention counted per pixel). See ``mmevo/utils/flops.py``.
"""
import argparse
import json

import torch
from mmengine.config import Config, DictAction

import mmevo  # noqa: F401  (mmevo:: bases and safe loading, before any config is parsed)
from mmevo.utils import ignore_pkg_resources_warning
from mmevo.utils.flops import (
    ATTENTION_KEY,
    config_input_size,
    cvnets_profiler_macs,
    format_count,
    get_model_complexity,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Params and FLOPs (multiply-adds) of a config\'s model')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        help='input H W (one value: square). Default: the test pipeline\'s crop for '
        'classification configs (224x224 when none), 800x1280 for mmdet, 512x2048 for mmseg')
    parser.add_argument(
        '--backbone-only', action='store_true', help='count the backbone only')
    parser.add_argument('--batch-size', type=int, default=1, help='input batch (default 1)')
    parser.add_argument(
        '--show-table',
        type=int,
        default=0,
        metavar='DEPTH',
        help='also print a per-module table down to this depth')
    parser.add_argument(
        '--convention',
        choices=('fvcore', 'ml-cvnets'),
        default='fvcore',
        help="'ml-cvnets': also count as ml-cvnets' module profiler does (the published "
        'EdgeFormer / ParC-Net MAdds: no BatchNorm, channel attention per pixel)')
    parser.add_argument(
        '--det-rois',
        choices=('proposals', 'mmdet2'),
        default='proposals',
        help="two-stage detectors: 'proposals' runs the RoI heads on the RPN's proposals "
        "(mmdet 3.x mode='tensor'); 'mmdet2' as mmdet 2.x's get_flops did (box heads on 1000 "
        'proposals, mask heads on 100): the convention of published mmdet 2.x detector FLOPs')
    parser.add_argument('--json', help='write the results to this JSON file')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, e.g. model.backbone.window_size="[7,7,14,7]"')
    args = parser.parse_args(argv)
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error('--shape takes H W or a single size')
    return args


def main(argv=None) -> dict:
    ignore_pkg_resources_warning()
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    shape = tuple(args.shape) if args.shape else config_input_size(cfg)
    if len(shape) == 1:
        shape = (shape[0], shape[0])
    result, analyzer, model = get_model_complexity(
        cfg, shape, backbone_only=args.backbone_only, batch_size=args.batch_size,
        with_modules=False, det_rois=args.det_rois)

    cvnets = None
    if args.convention == 'ml-cvnets':
        cvnets = cvnets_profiler_macs(
            model, torch.randn(result.input_shape, generator=torch.Generator().manual_seed(0)))
    what = 'backbone only' if args.backbone_only else 'whole model'
    ops = result.by_operator
    attention = ops.get(ATTENTION_KEY, 0) + sum(
        ops.get(k, 0) for k in ('matmul', 'bmm', 'mm', 'einsum'))
    sampling = ops.get('grid_sampler', 0) + ops.get('deform_sampling', 0)
    line = '=' * 78
    print(line)
    print(f'Config:       {args.config}')
    print(f'Scope / part: {cfg.get("default_scope")} / {what}')
    print(f'Input shape:  {result.input_shape}')
    print(f'Params:       {format_count(result.params, "M")} ({result.params:,})')
    if cvnets is not None:
        print(f'MAdds:        {format_count(cvnets)}  (ml-cvnets profiler convention: conv/linear '
              'with bias adds, no BatchNorm,\n              GCC channel attention per pixel; the '
              'published EdgeFormer / ParC-Net figures)')
    print(f'FLOPs:        {format_count(result.flops)}  (multiply-adds, attention matmuls and '
          'sampling included: fvcore convention)')
    print(f'FLOPs w/o attention matmuls and sampling: '
          f'{format_count(result.flops_without_attention)}  (mmcv hook-counter convention)')
    print(f'  attention matmuls {format_count(attention)}, sampling (grid_sample / deformable) '
          f'{format_count(sampling)}')
    print('  by operator: ' + ', '.join(f'{k} {format_count(v)}' for k, v in ops.items()))
    if result.uncounted_ops:
        print('  counted as 0 (element-wise, as in fvcore): ' +
              ', '.join(f'{k.split("::")[-1]} x{n}' for k, n in result.uncounted_ops.items()))
    print(line)
    print('Published EATFormer classification FLOPs are fvcore counts (first figure); the '
          'published\ndetection/segmentation FLOPs leave out attention matmuls (second figure).',
          flush=True)
    if args.show_table:
        from mmengine.analysis.print_helper import complexity_stats_table
        print(complexity_stats_table(analyzer, max_depth=args.show_table,
                                     show_param_shapes=False))

    out = dict(config=args.config, backbone_only=args.backbone_only,
               scope=cfg.get('default_scope'), **result.to_dict())
    if cvnets is not None:
        out['cvnets_madds'] = cvnets
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == '__main__':
    main()

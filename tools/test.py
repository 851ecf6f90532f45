# Copyright (c) mmevo contributors. All rights reserved.
"""Evaluate a checkpoint of an mmpretrain, mmdet or mmseg config.

The task comes from the config's ``default_scope``. Examples::

    python tools/test.py CONFIG CHECKPOINT
    python tools/test.py CONFIG CHECKPOINT --out results.pkl --show-dir vis
    bash tools/dist_test.sh CONFIG CHECKPOINT 8
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, ConfigDict, DictAction

import mmevo  # noqa: F401  (mmevo:: bases and safe checkpoint loading, before any config)
from mmevo.engine import build_runner
from mmevo.utils import (
    DataNotFoundError,
    check_data,
    ignore_pkg_resources_warning,
    setup_default_scope,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model with MMEngine')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the dir to save logs and metrics (default: ./work_dirs/<config>)')
    parser.add_argument(
        '--out', help='dump the predictions to this pickle file (.pkl or .pickle)')
    parser.add_argument(
        '--show-dir',
        help='save images with the predictions drawn on them; a relative path is '
        'placed under the run\'s folder in the work dir')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, e.g. test_dataloader.batch_size=4')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--check-data',
        action='store_true',
        help='only check that the files of the test dataset exist, then exit '
        '(tools/dist_test.sh does this before starting its processes)')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    if args.out is not None and not args.out.endswith(('.pkl', '.pickle')):
        parser.error('--out must be a .pkl or .pickle file')
    return args


def add_dump_metric(cfg: Config, scope: str, out_file: str) -> None:
    """Append a metric that pickles the predictions to the test evaluator."""
    if scope == 'mmdet':
        # mmdet's variant encodes masks as RLE, as mmdet's own tools expect.
        dump = dict(type='mmdet.DumpDetResults', out_file_path=out_file)
    else:
        dump = dict(type='mmengine.DumpResults', out_file_path=out_file)
    evaluator = cfg.test_evaluator
    if isinstance(evaluator, (dict, ConfigDict)) and 'metrics' in evaluator:
        metrics = evaluator['metrics']
        evaluator['metrics'] = (list(metrics) if isinstance(metrics, (list, tuple)) else
                                [metrics]) + [dump]
    elif isinstance(evaluator, (list, tuple)):
        cfg.test_evaluator = list(evaluator) + [dump]
    else:
        cfg.test_evaluator = [evaluator, dump]


def enable_visualization(cfg: Config, scope: str, show_dir: str) -> None:
    """Turn on the task's visualization hook so it writes images to ``show_dir``."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise SystemExit('--show-dir needs a visualization hook in default_hooks, e.g. '
                         "visualization=dict(type='DetVisualizationHook').")
    if scope == 'mmdet':
        hook['draw'] = True
        hook['test_out_dir'] = show_dir
    elif scope == 'mmseg':
        hook['draw'] = True
        cfg.visualizer['save_dir'] = show_dir
    elif scope == 'mmpretrain':
        hook['enable'] = True
        hook['out_dir'] = show_dir
    else:
        raise SystemExit(f"--show-dir is not supported for default_scope='{scope}'.")


def main(argv=None) -> None:
    ignore_pkg_resources_warning()
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    # Before any model or process group: a missing dataset is one line, not a traceback.
    try:
        check_data(cfg, ('test_dataloader',))
    except DataNotFoundError as e:
        raise SystemExit(f'error: {e}') from None
    if args.check_data:
        print('The data of test_dataloader is in place.')
        return
    scope = setup_default_scope(cfg)

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    cfg.resume = False

    if args.out is not None:
        add_dump_metric(cfg, scope, args.out)
    if args.show_dir is not None:
        enable_visualization(cfg, scope, args.show_dir)

    runner = build_runner(cfg)
    runner.test()


if __name__ == '__main__':
    main()

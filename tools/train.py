# Copyright (c) mmevo contributors. All rights reserved.
"""Train a model of mmpretrain, mmdet or mmseg from a config.

The task comes from the config's ``default_scope``. Examples::

    python tools/train.py configs/eatformer/eatformer-mobile_8xb128_in1k.py
    python tools/train.py CONFIG --resume                  # latest checkpoint of the work dir
    python tools/train.py CONFIG --resume work_dirs/x/iter_2000.pth
    bash tools/dist_train.sh CONFIG 8                      # 8 processes (GPUs, or CPU + gloo)
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.device import is_cuda_available

import mmevo  # noqa: F401  (mmevo:: bases and safe checkpoint loading, before any config)
from mmevo.engine import build_runner
from mmevo.utils import (
    DataNotFoundError,
    check_data,
    ignore_pkg_resources_warning,
    setup_default_scope,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model with MMEngine')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or, with no value, from the latest '
        'checkpoint in the work dir')
    parser.add_argument(
        '--amp', action='store_true', help='enable automatic mixed precision training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual batch size (needs cfg.auto_scale_lr)')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, e.g. train_cfg.max_epochs=12 '
        '"optim_wrapper.optimizer.lr=0.001"; lists as key="[a,b]", nesting allowed')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--check-data',
        action='store_true',
        help='only check that the files of the config\'s datasets exist, then exit '
        '(tools/dist_train.sh does this before starting its processes)')
    # torch.distributed.launch passes --local-rank (torch>=2.0) or --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply the command-line options to the config."""
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)

    # --work-dir > cfg.work_dir > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        if not is_cuda_available():
            raise SystemExit('--amp needs a CUDA device: MMEngine\'s AmpOptimWrapper '
                             'does not run on CPU.')
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print('AMP is already enabled in the config.')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise SystemExit('--auto-scale-lr needs auto_scale_lr=dict(base_batch_size=...) '
                             'in the config.')
        cfg.auto_scale_lr.enable = True

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None) -> None:
    ignore_pkg_resources_warning()
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    cfg = merge_args(cfg, args)
    # Before any model or process group: a missing dataset is one line, not a traceback.
    loaders = ('train_dataloader', 'val_dataloader')
    try:
        check_data(cfg, loaders)
    except DataNotFoundError as e:
        raise SystemExit(f'error: {e}') from None
    if args.check_data:
        print(f'The data of {" and ".join(k for k in loaders if cfg.get(k))} is in place.')
        return
    setup_default_scope(cfg)
    runner = build_runner(cfg)
    runner.train()


if __name__ == '__main__':
    main()

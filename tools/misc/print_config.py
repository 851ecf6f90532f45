# Copyright (c) mmevo contributors. All rights reserved.
"""Print a config with its bases (``mmevo::``, ``mmdet::``, ...) resolved.

    python tools/misc/print_config.py CONFIG [--cfg-options k=v ...] [--save-path out.py]
"""
import argparse

from mmengine.config import Config, DictAction

import mmevo  # noqa: F401  (mmevo:: bases, before any config)
from mmevo.utils import ignore_pkg_resources_warning


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Print the whole config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--save-path', help='also write the resolved config to this file')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, e.g. model.backbone.arch=mobile')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    ignore_pkg_resources_warning()
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    print(cfg.pretty_text)
    if args.save_path is not None:
        cfg.dump(args.save_path)
        print(f'written to {args.save_path}')


if __name__ == '__main__':
    main()

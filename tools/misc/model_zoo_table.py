# Copyright (c) mmevo contributors. All rights reserved.
"""Generate or check README.md's model-zoo table from model-index.yml and the metafiles.

    python tools/misc/model_zoo_table.py --check    # exit 1 and say what differs
    python tools/misc/model_zoo_table.py --write    # rewrite the block between the markers
    python tools/misc/model_zoo_table.py            # print the table

The table sits between the ``<!-- model-zoo:begin ... -->`` and ``<!-- model-zoo:end -->``
lines of README.md; see :mod:`mmevo.utils.model_zoo` for the metafile fields it reads.
"""
import argparse
import os.path as osp
import sys

from mmevo.utils.model_zoo import (
    ModelZooError,
    check_readme,
    load_model_zoo,
    render_table,
    write_readme,
)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--check', action='store_true', help='fail if README.md is out of date')
    mode.add_argument('--write', action='store_true', help='regenerate the table in README.md')
    parser.add_argument('--root', default=REPO, help='repository root (default: this checkout)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    readme = osp.join(args.root, 'README.md')
    try:
        zoo = load_model_zoo(args.root)
        if args.check:
            problems = check_readme(readme, zoo)
            for problem in problems:
                print(f'model zoo: {problem}', file=sys.stderr)
            if problems:
                print('Run `python tools/misc/model_zoo_table.py --write` after fixing the '
                      'metafiles.', file=sys.stderr)
                return 1
            print(f'README.md model zoo is up to date ({len(zoo.models)} models).')
        elif args.write:
            changed = write_readme(readme, zoo)
            print(f"README.md model zoo {'updated' if changed else 'unchanged'} "
                  f'({len(zoo.models)} models).')
        else:
            print(render_table(zoo))
    except ModelZooError as e:
        print(f'model zoo: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

# Copyright (c) mmevo contributors. All rights reserved.
"""Measure the CPU inference throughput of model-zoo models; write it into their metafiles.

    python tools/misc/zoo_throughput.py                        # every model: measure and print
    python tools/misc/zoo_throughput.py 'eat-*' --write        # write the metafiles and README

Each model is timed by ``tools/analysis_tools/benchmark.py CONFIG --mode forward`` (its own
process, eval mode, fp32, at the config's test crop: ``mmevo.utils.flops.config_input_size``):
throughput is batch / median latency.
``--write`` stores the number with its setup (CPU, threads, batch, resolution, date and this
command) in the model's metafile and regenerates README.md's model-zoo table. Measure on a quiet
machine: the load of other processes is printed beside each number.
"""
import argparse
import datetime
import fnmatch
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
from typing import List, Optional, Tuple

from mmevo.utils import ignore_pkg_resources_warning
from mmevo.utils.model_zoo import ModelZooError, load_model_zoo, set_throughput, write_readme

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BENCHMARK = osp.join(REPO, 'tools', 'analysis_tools', 'benchmark.py')


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('models', nargs='*', help='model names or shell patterns (default: all)')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--iters', type=int, default=5)
    parser.add_argument('--write', action='store_true',
                        help='write the metafiles and regenerate the README table')
    parser.add_argument('--timeout', type=float, default=1800,
                        help='seconds per model (default 1800)')
    parser.add_argument('--root', default=REPO, help='repository root (default: this checkout)')
    args = parser.parse_args(argv)
    for name in ('batch_size', 'threads', 'iters'):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        parser.error('--warmup must be >= 0')
    return args


def measure(config: str, args: argparse.Namespace) -> Tuple[float, List[int], dict]:
    """Throughput (img/s), resolution ``[h, w]`` (benchmark.py's default: the config's test
    crop) and the report's meta of one config."""
    with tempfile.TemporaryDirectory() as tmp:
        out = osp.join(tmp, 'result.json')
        cmd = [sys.executable, BENCHMARK, config, '--mode', 'forward', '--batch-size',
               str(args.batch_size), '--threads', str(args.threads), '--warmup',
               str(args.warmup), '--iters', str(args.iters), '--json', out]
        proc = subprocess.run(cmd, cwd=args.root, capture_output=True, text=True,
                              timeout=args.timeout)
        if proc.returncode != 0 or not osp.exists(out):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f'benchmark.py failed (exit {proc.returncode}): '
                               + ' | '.join(tail))
        with open(out) as f:
            report = json.load(f)
    result = report['results'][0]
    if 'error' in result:
        raise RuntimeError(result['error'].strip().splitlines()[-1])
    return result['throughput'], result['shape'], report['meta']


def setup_of(args: argparse.Namespace, shape: List[int], meta: dict) -> dict:
    """The metafile's ``CPU Throughput Setup`` of one measurement."""
    command = (f'python tools/misc/zoo_throughput.py --batch-size {args.batch_size} '
               f'--threads {args.threads} --warmup {args.warmup} --iters {args.iters}')
    return {
        'hardware': meta['machine'].get('cpu') or meta['machine'].get('platform', 'unknown'),
        'threads': args.threads,
        'batch size': args.batch_size,
        'resolution': f'{shape[0]}x{shape[1]}',
        'mode': 'fp32',
        'date': datetime.date.today().isoformat(),
        'command': command,
    }


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    ignore_pkg_resources_warning()
    try:
        zoo = load_model_zoo(args.root)
    except ModelZooError as e:
        print(f'model zoo: {e}', file=sys.stderr)
        return 1
    models = [m for m in zoo.models
              if not args.models or any(fnmatch.fnmatchcase(m.name, p) for p in args.models)]
    if not models:
        print(f'no model-zoo model matches {args.models}', file=sys.stderr)
        return 1
    failed = 0
    for model in models:
        try:
            throughput, shape, meta = measure(osp.join(args.root, model.config), args)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            print(f'{model.name}: failed: {e}', file=sys.stderr)
            failed += 1
            continue
        load = meta.get('loadavg_before')
        print(f'{model.name}: {throughput:.1f} img/s at {shape[0]}x{shape[1]} '
              f'(load average before: {load[0] if load else "?"})', flush=True)
        if args.write:
            path = osp.join(args.root, model.metafile)
            with open(path) as f:
                text = f.read()
            text = set_throughput(text, model.name, throughput, setup_of(args, shape, meta))
            tmp = f'{path}.tmp{os.getpid()}'
            with open(tmp, 'w') as f:
                f.write(text)
            os.replace(tmp, path)
    if args.write:
        changed = write_readme(osp.join(args.root, 'README.md'), load_model_zoo(args.root))
        print(f"README.md model zoo {'updated' if changed else 'unchanged'}.")
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

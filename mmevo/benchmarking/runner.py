# Copyright (c) mmevo contributors. All rights reserved.
"""Variants from the command line, the measuring processes and the report.

Every (variant, mode) is measured in its own fresh process (:func:`launch`), so its peak memory
is its own and the malloc settings are set before the interpreter starts. With ``alternate``
one process per mode times all variants of that mode in turn instead
(:func:`~.measuring.measure_alternating`): the drift-robust speed ratios, without per-variant
memory.
"""
import json
import os.path as osp
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

from .report import print_report, report_meta, write_json
from .system import loadavg, worker_env
from .workload import DTYPES, MODES

#: Run options a ``--compare`` variant may change (everything else is a config override).
RUN_KEYS = ('dtype', 'channels_last', 'compile', 'with_cp', 'fuse', 'reference', 'external',
            'batch_size', 'threads', 'mode')
#: Run settings all variants of a mode share under ``alternate`` (one process runs them).
ALTERNATE_SHARED_KEYS = ('threads', 'malloc', 'device')

Job = Tuple[dict, str]  # (run settings, mode)


def _to_bool(value: str) -> bool:
    if value.lower() in ('1', 'true', 'yes', 'on'):
        return True
    if value.lower() in ('0', 'false', 'no', 'off'):
        return False
    raise ValueError(f'expected a boolean, got {value!r}')


def _format_override(value) -> str:
    """A parsed ``--cfg-options`` value back to its command-line form."""
    if isinstance(value, (list, tuple)):
        inner = ','.join(_format_override(v) for v in value)
        return f'[{inner}]' if isinstance(value, list) else f'({inner})'
    return str(value)


def base_run(args) -> dict:
    """The run settings of the command line's own options (the first variant).

    Args:
        args (argparse.Namespace): Options of ``tools/analysis_tools/benchmark.py``.
    """
    cfg_options = [f'{key}={_format_override(value)}'
                   for key, value in (args.cfg_options or {}).items()]
    return dict(
        label='base (reference)' if args.reference else 'base',
        config=args.config,
        cfg_options=cfg_options,
        mode=args.mode,
        batch_size=args.batch_size,
        shape=args.shape,
        warmup=args.warmup,
        iters=args.iters,
        threads=args.threads,
        dtype=args.dtype,
        channels_last=args.channels_last,
        compile=args.compile,
        with_cp=args.with_cp,
        fuse=args.fuse,
        reference=args.reference,
        external=None,
        malloc=args.malloc,
        pythonpath=[osp.abspath(p) for p in args.pythonpath],
        device=args.device,
        backbone_only=args.backbone_only,
        profile_ops=args.profile,
        roofline=args.roofline)


def parse_variant(text: str, base: dict) -> dict:
    """A ``--compare`` argument -> run settings (a copy of ``base`` with its changes).

    ``text`` is ``;``-separated ``KEY=VALUE`` items: keys of :data:`RUN_KEYS` change how the
    variant runs, all others override the config. Raises ``ValueError`` naming a bad item.
    """
    run = dict(base, label=text, cfg_options=list(base['cfg_options']))
    for item in filter(None, (s.strip() for s in text.split(';'))):
        if '=' not in item:
            raise ValueError(f'--compare item {item!r} is not KEY=VALUE')
        key, value = item.split('=', 1)
        key = key.strip()
        if key == 'dtype':
            if value not in DTYPES:
                raise ValueError(f'dtype must be one of {DTYPES}, got {value!r}')
            run['dtype'] = value
        elif key == 'mode':
            if value not in MODES + ('both', ):
                raise ValueError(f'mode must be one of {MODES + ("both", )}, got {value!r}')
            run['mode'] = value
        elif key in ('channels_last', 'compile', 'with_cp', 'fuse', 'reference'):
            run[key] = _to_bool(value)
        elif key in ('batch_size', 'threads'):
            run[key] = int(value)
        elif key == 'external':
            if value.count(':') != 1:
                raise ValueError(f'external must be MODULE:FACTORY, got {value!r}')
            run['external'] = value
        else:
            run['cfg_options'].append(f'{key}={value}')
    return run


def plan_jobs(base: dict, compare: Sequence[str], alternate: bool = False) -> List[Job]:
    """``(run, mode)`` of the base run and each ``--compare`` variant, in measuring order.

    Raises ``ValueError`` for a bad variant, or (``alternate``) for variants of one mode that
    differ in a setting of :data:`ALTERNATE_SHARED_KEYS`.
    """
    runs = [base] + [parse_variant(text, base) for text in compare]
    jobs = [(run, mode) for run in runs
            for mode in (MODES if run['mode'] == 'both' else (run['mode'], ))]
    if alternate:
        for mode in MODES:
            for key in ALTERNATE_SHARED_KEYS:
                if len({str(run.get(key)) for run, m in jobs if m == mode}) > 1:
                    raise ValueError(f'--alternate needs one {key} for all variants of a mode')
    return jobs


def launch(payload: dict, env: Dict[str, str], timeout: float) -> dict:
    """Run the measuring process on ``payload`` (see :mod:`.worker`) with environment ``env``;
    its result, or ``{'error': ...}`` with the process's last output lines."""
    with tempfile.TemporaryDirectory(prefix='mmevo_bench_') as tmp:
        spec_file, out = osp.join(tmp, 'spec.json'), osp.join(tmp, 'result.json')
        with open(spec_file, 'w') as f:
            json.dump(payload, f)
        cmd = [sys.executable, '-m', 'mmevo.benchmarking.worker', spec_file, out]
        try:
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return dict(error=f'timed out after {timeout:.0f} s')
        if proc.returncode != 0 or not osp.exists(out):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
            return dict(error=f'exit code {proc.returncode}: ' + '\n'.join(tail))
        with open(out) as f:
            return json.load(f)


def _env(run: dict) -> Dict[str, str]:
    return worker_env(run['threads'], run.get('malloc', 'fast'))


def measure_separately(jobs: List[Job], timeout: float) -> List[dict]:
    """Each job in its own process, in order: speed and peak memory."""
    results = []
    for run, mode in jobs:
        print(f"[benchmark] {run['label']}: {mode} ...", flush=True)
        spec = dict(run, mode=mode)
        res = launch(spec, _env(run), timeout)
        if 'error' in res:
            res = dict(spec, error=res['error'])
            print(f"[benchmark]   failed: {res['error']}", flush=True)
        else:
            print(f"[benchmark]   {res['throughput']:.2f} img/s, median "
                  f"{res['latency_ms']['median']:.1f} ms, peak {res['peak_memory_mb']:.0f} MB "
                  f"(+{res['peak_memory_delta_mb']:.0f} MB), other load "
                  f"{res.get('other_load')}", flush=True)
        res['attempts'] = 1  # measurements behind this result (a field of the JSON format)
        results.append(res)
    return results


def measure_alternately(jobs: List[Job], timeout: float) -> List[dict]:
    """One process per mode times all of that mode's jobs in turn (``--alternate``)."""
    results: List[Optional[dict]] = [None] * len(jobs)
    for mode in MODES:
        index = [j for j, (_, m) in enumerate(jobs) if m == mode]
        if not index:
            continue
        specs = [dict(jobs[j][0], mode=mode) for j in index]
        labels = ', '.join(spec['label'] for spec in specs)
        print(f'[benchmark] {mode}, alternating {labels} ...', flush=True)
        res = launch(dict(alternate=specs), _env(specs[0]), timeout * len(specs))
        for k, (spec, j) in enumerate(zip(specs, index)):
            if 'error' in res:
                results[j] = dict(spec, error=res['error'])
                print(f"[benchmark]   failed: {res['error']}", flush=True)
                continue
            results[j] = res['results'][k]
            print(f"[benchmark]   {spec['label']}: {results[j]['throughput']:.2f} img/s, "
                  f"{results[j]['paired_throughput_ratio']:.2f}x the first (median of "
                  f"{len(results[j]['iteration_ms'])} turns)", flush=True)
    return results


def run_benchmark(jobs: List[Job],
                  alternate: bool = False,
                  timeout: float = 3600,
                  json_path: Optional[str] = None,
                  command: Sequence[str] = ()) -> dict:
    """Measure ``jobs`` (:func:`plan_jobs`), print the report and write it to ``json_path``.

    Args:
        jobs (list): ``(run, mode)`` pairs; the first run's config, device, threads and
            malloc mode describe the report.
        alternate (bool): Time all variants of a mode in one process, one iteration of each
            in turn (:func:`measure_alternately`); else one process per job.
        timeout (float): Seconds per measuring process (per variant with ``alternate``).
        json_path (str, optional): Write ``{"meta": ..., "results": ...}`` here.
        command (Sequence[str]): The command line, recorded in the report.

    Returns:
        dict: The report.
    """
    load_before = loadavg()
    measure_jobs = measure_alternately if alternate else measure_separately
    results = measure_jobs(jobs, timeout)
    base = jobs[0][0]
    report = dict(
        meta=report_meta(command, base.get('malloc', 'fast'), load_before), results=results)
    print_report(report, base['config'], base['device'], base['threads'])
    if json_path:
        write_json(report, json_path)
        print(f'results written to {json_path}')
    return report

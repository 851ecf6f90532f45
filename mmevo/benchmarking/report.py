# Copyright (c) mmevo contributors. All rights reserved.
"""The benchmark report: its meta data, the printed tables and the JSON file.

The JSON file is ``{"meta": {...}, "results": [...]}``: ``meta`` holds ``date``, ``command``,
``machine``, ``malloc_env``, ``threading_env``, ``loadavg_before`` and ``loadavg_after``;
``results`` one dict per (variant, mode) as the measuring functions of
:mod:`mmevo.benchmarking.measuring` return them (or the run settings with an ``error``).
"""
import datetime
import json
import shlex
from typing import Dict, List, Optional, Sequence

from .memory import MALLOC_MODES
from .system import loadavg, machine_info, threading_env


def report_meta(command: Sequence[str], malloc: str,
                loadavg_before: Optional[List[float]]) -> dict:
    """When, how (``command``, shell-quoted) and where the results were measured."""
    return dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        command=' '.join(shlex.quote(a) for a in command),
        machine=machine_info(),
        malloc_env=MALLOC_MODES[malloc],
        threading_env=threading_env(),
        loadavg_before=loadavg_before,
        loadavg_after=loadavg())


def _ratio(value, base) -> str:
    if value is None or not base:
        return '-'
    return f'{value / base:.2f}x'


def _mb(value) -> str:
    return '-' if value is None else f'{value:.0f}'


def format_table(results: List[dict]) -> str:
    """One row per result; the "vs first" columns compare with the first variant of the same
    mode (with ``--alternate``, the speed column is the median of same-turn ratios)."""
    header = ('| variant | mode | batch | img/s | vs first | median ms | p90 ms | peak MB '
              '| peak delta MB | delta vs first | other load |')
    lines = [header, '|' + '---|' * 11]
    firsts: Dict[str, dict] = {}
    for res in results:
        mode = res['mode']
        if 'error' in res:
            lines.append(f"| {res['label']} | {mode} | {res['batch_size']} | failed: "
                         f"{res['error'].splitlines()[-1][:80]} | | | | | | | |")
            continue
        first = firsts.setdefault(mode, res)
        lat = res['latency_ms']
        speed = _ratio(res['throughput'], first['throughput'])
        if 'paired_throughput_ratio' in res:
            speed = f"{res['paired_throughput_ratio']:.2f}x"
        memory = _ratio(res['peak_memory_delta_mb'], first['peak_memory_delta_mb'])
        lines.append(
            f"| {res['label']} | {mode} | {res['batch_size']} | {res['throughput']:.2f} | "
            f"{speed} | {lat['median']:.1f} | {lat['p90']:.1f} | {_mb(res['peak_memory_mb'])} | "
            f"{_mb(res['peak_memory_delta_mb'])} | {memory} | {res.get('other_load', '-')} |")
    return '\n'.join(lines)


def format_roofline(results: List[dict]) -> str:
    """The ``--roofline`` table: multiply-adds, achieved rate, peak, and latency at the peak."""
    rows = [res for res in results if 'roofline_stats' in res]
    if not rows:
        return ''
    lines = ['| variant | GMAC/image | achieved GMAC/s | peak GMAC/s by kernel | of peak '
             '| median ms | ms at peak |', '|' + '---|' * 7]
    for res in rows:
        roof = res['roofline_stats']
        kernels = ', '.join(f'{k} {v:.1f}' for k, v in roof['peak_by_kernel_gmacs'].items())
        lines.append(
            f"| {res['label']} | {roof['macs_per_image'] / 1e9:.3f} | "
            f"{roof['achieved_gmacs']:.1f} | {kernels} | {roof['fraction_of_peak']:.0%} | "
            f"{res['latency_ms']['median']:.1f} | {roof['floor_ms']:.1f} |")
    return '\n'.join(lines)


def print_report(report: dict, config: str, device: str, threads: Optional[int]) -> None:
    """The header line, the results table, the roofline table and any profiles."""
    meta, results = report['meta'], report['results']
    print()
    print(f"{config} | {device} | threads {threads or 'default'} | {meta['date']} | "
          f"load average before/after {meta['loadavg_before']} / {meta['loadavg_after']}")
    print(format_table(results))
    roofline = format_roofline(results)
    if roofline:
        print('\nForward multiply-adds against the matrix-multiply peak (--roofline):')
        print(roofline)
    for res in results:
        if 'profile' in res:
            print(f"\nProfile of one {res['mode']} iteration of {res['label']} "
                  f"(top ops by self time):")
            print(res['profile']['table'])


def write_json(report: dict, path: str) -> None:
    with open(path, 'w') as f:
        json.dump(report, f, indent=2)

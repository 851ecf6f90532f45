# Copyright (c) mmevo contributors. All rights reserved.
"""Timing inside the measuring process: one variant with its memory, or several in turn.

Both return result dicts: the run settings, what :func:`~.workload.prepare` built, the latency
statistics and throughput of the timed iterations (after the warm-up) and the other processes'
load meanwhile.
"""
from typing import Dict, List, Optional

from .memory import MemoryMeter, minor_faults
from .roofline import add_roofline
from .stats import latency_stats, median_paired_ratio, throughput, time_step
from .system import cpu_mark, other_load
from .workload import graph_breaks, prepare


def timed_result(spec: dict, info: dict, times: List[float],
                 load: Optional[float]) -> dict:
    """The fields every measurement has: the spec, what was built, the latency statistics
    (``latency_ms``) and ``throughput`` of ``times`` (seconds) and the ``other_load``."""
    result = dict(
        spec,
        **info,
        latency_ms=latency_stats(times),
        throughput=throughput(spec['batch_size'], times),
        other_load=None if load is None else round(load, 2))
    if spec['compile']:
        result.update(graph_breaks())
    return result


def measure(spec: dict) -> dict:
    """Build the variant of ``spec`` and time ``spec['mode']``, with its peak memory.

    Besides :func:`timed_result`'s fields: ``first_iter_s``, ``page_faults_per_iter``, the
    :class:`~.memory.MemoryMeter` fields, ``roofline_stats`` (forward with ``roofline``) and
    ``profile`` (with ``profile_ops``).
    """
    import torch
    step, sync, info = prepare(spec)
    device = torch.device(spec['device'])
    meter = MemoryMeter(device)
    meter.start()
    times = []
    first_iter_s = None
    faults = 0
    for i in range(spec['warmup'] + spec['iters']):
        if i == spec['warmup']:
            faults = minor_faults()
            mark = cpu_mark()
            if i > 0:
                meter.restart_peak()
        elapsed = time_step(step, sync)
        if i == 0:
            first_iter_s = elapsed
        if i >= spec['warmup']:
            times.append(elapsed)
    memory = meter.result()
    faults = minor_faults() - faults
    load = other_load(mark)
    profile = profile_step(step, device, spec['profile_ops']) if spec.get('profile_ops') \
        else None

    result = timed_result(spec, info, times, load)
    add_roofline(result, {})
    result.update(
        first_iter_s=round(first_iter_s, 3),
        page_faults_per_iter=round(faults / spec['iters']),
        **memory)
    if profile is not None:
        result['profile'] = profile
    return result


def measure_alternating(specs: List[dict]) -> List[dict]:
    """Time the variants ``specs`` in this one process, one iteration of each in turn.

    A B C A B C ...: all of them see the same machine state, so on a machine whose speed
    drifts from minute to minute each variant's ``paired_throughput_ratio``, the median over
    turns of its throughput relative to the first variant's in the same turn (lowest and
    highest in ``paired_throughput_ratio_range``), is the robust figure. ``iteration_ms``
    lists its timed iterations. Memory is not attributed to variants here (``None``).
    """
    prepared = [prepare(s) for s in specs]
    times: List[List[float]] = [[] for _ in specs]
    warmup, iters = specs[0]['warmup'], specs[0]['iters']
    for i in range(warmup + iters):
        if i == warmup:
            mark = cpu_mark()
        for (step, sync, _), ts in zip(prepared, times):
            elapsed = time_step(step, sync)
            if i >= warmup:
                ts.append(elapsed)
    load = other_load(mark)
    results = []
    peaks: Dict[str, dict] = {}  # per dtype, shared by the variants
    for s, (_, _, info), ts in zip(specs, prepared, times):
        ratio, low, high = median_paired_ratio(times[0], ts)
        result = timed_result(s, info, ts, load)
        add_roofline(result, peaks)
        result.update(
            iteration_ms=[round(t * 1e3, 3) for t in ts],
            paired_throughput_ratio=round(ratio, 4),
            paired_throughput_ratio_range=[round(low, 4), round(high, 4)],
            peak_memory_mb=None,
            peak_memory_delta_mb=None)
        results.append(result)
    return results


def profile_step(step, device, top: int) -> dict:
    """One profiled ``step()``: the ``top`` ops by self time (CPU, or CUDA on a GPU)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        step()
    sort_by = 'self_cuda_time_total' if device.type == 'cuda' else 'self_cpu_time_total'
    events = prof.key_averages()
    total_self = sum(e.self_cpu_time_total for e in events) or 1
    rows = []
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:top]:
        row = dict(
            name=e.key,
            calls=e.count,
            self_cpu_ms=round(e.self_cpu_time_total / 1e3, 3),
            self_cpu_pct=round(100 * e.self_cpu_time_total / total_self, 2),
            cpu_total_ms=round(e.cpu_time_total / 1e3, 3))
        if device.type == 'cuda':
            row['self_device_ms'] = round(getattr(e, 'self_device_time_total', 0) / 1e3, 3)
        rows.append(row)
    return dict(
        sort_by=sort_by,
        self_cpu_total_ms=round(total_self / 1e3, 3),
        top=rows,
        table=events.table(sort_by=sort_by, row_limit=top))

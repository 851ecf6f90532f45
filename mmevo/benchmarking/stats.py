# Copyright (c) mmevo contributors. All rights reserved.
"""Timing one step and summarising the timed iterations."""
import math
import time
from typing import Callable, List, Sequence, Tuple


def time_step(step: Callable[[], object], sync: Callable[[], None]) -> float:
    """Seconds of one ``step()``, device work included (``sync`` waits for the device)."""
    sync()
    start = time.perf_counter()
    step()
    sync()
    return time.perf_counter() - start


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear-interpolated ``q``-th percentile of already sorted values."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency_stats(times: Sequence[float]) -> dict:
    """Median, p90, mean, min and max in milliseconds (3 decimals) of ``times`` in seconds."""
    times_ms = sorted(t * 1e3 for t in times)
    return dict(
        median=round(percentile(times_ms, 50), 3),
        p90=round(percentile(times_ms, 90), 3),
        mean=round(sum(times_ms) / len(times_ms), 3),
        min=round(times_ms[0], 3),
        max=round(times_ms[-1], 3))


def throughput(batch_size: int, times: Sequence[float]) -> float:
    """Images per second at the median latency of ``times`` (seconds), 3 decimals."""
    median_ms = percentile(sorted(t * 1e3 for t in times), 50)
    return round(batch_size / (median_ms / 1e3), 3)


def paired_ratios(first: Sequence[float], times: Sequence[float]) -> List[float]:
    """Sorted throughput ratios ``first[i] / times[i]`` of iterations timed in the same turn."""
    return sorted(t0 / t for t0, t in zip(first, times))


def median_paired_ratio(first: Sequence[float],
                        times: Sequence[float]) -> Tuple[float, float, float]:
    """Median, lowest and highest of :func:`paired_ratios` (the ``--alternate`` figures)."""
    ratios = paired_ratios(first, times)
    return percentile(ratios, 50), ratios[0], ratios[-1]

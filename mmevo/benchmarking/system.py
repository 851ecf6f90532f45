# Copyright (c) mmevo contributors. All rights reserved.
"""The machine a benchmark runs on: description, threads and malloc settings, other load.

"Other load" is the number of cores other processes kept busy, on average, during the timed
iterations (from ``/proc/stat`` minus the measuring process's own CPU time). Timings with other
load are not comparable: with 2 threads on 2 cores, OpenMP threads then wait on each other and
forwards slow down by up to 10x.
"""
import os
import platform
import time
from typing import Dict, List, Optional, Tuple

from .memory import MALLOC_MODES

#: Environment variables that set threading or malloc behaviour, recorded with every report.
THREADING_ENV_PREFIXES = ('OMP_', 'GOMP_', 'KMP_', 'MKL_', 'MALLOC_')


def machine_info() -> dict:
    """Platform, Python, CPU count and model, host name, torch version and GPU name."""
    info = dict(
        platform=platform.platform(),
        python=platform.python_version(),
        cpu_count=os.cpu_count(),
        hostname=platform.node())
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    info['cpu'] = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        import torch
        info['torch'] = torch.__version__
        if torch.cuda.is_available():
            info['gpu'] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def loadavg() -> Optional[List[float]]:
    """1/5/15-minute load averages: other processes competing for the cores skew timings."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def threading_env() -> Dict[str, str]:
    """The threading and malloc variables of this process's environment, sorted."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(THREADING_ENV_PREFIXES)}


def worker_env(threads: Optional[int], malloc: str = 'fast') -> Dict[str, str]:
    """Environment of a measuring process: ``malloc`` mode (values the user set win) and, if
    given, ``threads`` OpenMP/MKL threads. It must be set before that interpreter starts."""
    env = dict(os.environ)
    for key, value in MALLOC_MODES[malloc].items():
        env.setdefault(key, value)
    if threads:
        for key in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
            env[key] = str(threads)
    return env


def busy_cpu_seconds() -> Optional[float]:
    """CPU seconds all processes of the machine spent busy so far (Linux ``/proc/stat``)."""
    try:
        with open('/proc/stat') as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')


CpuMark = Tuple[Optional[float], float, float]


def cpu_mark() -> CpuMark:
    """Machine busy time, this process's CPU time and the wall clock, for :func:`other_load`."""
    return busy_cpu_seconds(), time.process_time(), time.perf_counter()


def other_load(since: CpuMark) -> Optional[float]:
    """Cores kept busy by *other* processes since the :func:`cpu_mark` ``since``, on average;
    None where ``/proc/stat`` is unavailable."""
    busy0, own0, wall0 = since
    busy = busy_cpu_seconds()
    if busy is None or busy0 is None:
        return None
    wall = time.perf_counter() - wall0
    return max(0., (busy - busy0) - (time.process_time() - own0)) / max(wall, 1e-9)

# Copyright (c) mmevo contributors. All rights reserved.
"""Speed and memory benchmarks of config models (``tools/analysis_tools/benchmark.py``).

* :mod:`.system`: the machine, its threads and malloc settings, other processes' load;
* :mod:`.memory`: glibc malloc modes and the peak memory of the timed iterations;
* :mod:`.stats`: timing a step, latency statistics, same-turn ratios;
* :mod:`.roofline`: a forward's multiply-adds against the machine's matrix-multiply peak;
* :mod:`.workload`: the model of a variant and its inference or training step;
* :mod:`.measuring`: timing in the measuring process, one variant or several in turn;
* :mod:`.runner`: variants, the measuring processes (:mod:`.worker`) and the report;
* :mod:`.report`: meta data, tables and the JSON file.
"""
from .measuring import measure, measure_alternating
from .memory import MALLOC_MODES
from .runner import RUN_KEYS, base_run, parse_variant, plan_jobs, run_benchmark
from .workload import DTYPES, MODES

__all__ = [
    'DTYPES', 'MALLOC_MODES', 'MODES', 'RUN_KEYS', 'base_run', 'measure', 'measure_alternating',
    'parse_variant', 'plan_jobs', 'run_benchmark'
]

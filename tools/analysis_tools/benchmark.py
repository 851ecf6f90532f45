# Copyright (c) mmevo contributors. All rights reserved.
"""Throughput, latency and peak memory of a config's model: inference and a training step.

Every (variant, mode) runs in its own fresh subprocess, so peak memory is clean and the glibc
malloc thresholds (without which single forwards spike 10-60x on some machines) are set before
the interpreter starts. Examples::

    # CPU, 2 threads, batch 32 at 224x224: forward and a full training step
    python tools/analysis_tools/benchmark.py configs/eatformer/eatformer-small_8xb128_in1k.py \\
        --batch-size 32 --threads 2 --iters 10 --warmup 3

    # several variants in one run, with ratios against the first one
    python tools/analysis_tools/benchmark.py configs/eatformer/eatformer-tiny_8xb128_in1k.py \\
        --batch-size 32 --threads 2 --compare model.backbone.with_cp=True channels_last=True \\
        dtype=bf16 --json tiny.json

    # the fast path against the straightforward formulation of the same model and weights
    # (mmevo.testing.as_reference: explicit softmax(q k^T) v, padded window copies, ...)
    python tools/analysis_tools/benchmark.py configs/eatformer/eatformer-small_8xb128_in1k.py \\
        --batch-size 32 --threads 2 --reference --compare reference=false \\
        "reference=false;channels_last=true;fuse=true" "reference=false;with_cp=true"

    # backbone only (training step = backbone forward + sum(outputs).backward() + optimizer)
    python tools/analysis_tools/benchmark.py configs/mask_rcnn/eatformer_t_1x.py --backbone-only \\
        --batch-size 2 --device cuda --dtype amp

    # side by side with another implementation of the same model (e.g. the official code,
    # importable from --pythonpath), on the same harness, interleaved over 3 rounds
    python tools/analysis_tools/benchmark.py configs/eatformer/eatformer-small_8xb128_in1k.py \\
        --batch-size 32 --threads 2 --rounds 3 --pythonpath /path/to/EATFormer \\
        --compare external=model.eatformer:eatformer_small

    # how close the forward comes to this machine's dense matrix-multiply peak (multiply-adds
    # counted as get_flops.py counts them; the peak measured in the same process and dtype)
    python tools/analysis_tools/benchmark.py configs/eatformer/eatformer-tiny_8xb128_in1k.py \\
        --batch-size 32 --threads 2 --mode forward --roofline

``--compare`` takes one argument per variant; an argument is ``;``-separated ``KEY=VALUE`` items.
Items whose key is one of ``dtype``, ``channels_last``, ``compile``, ``with_cp``, ``fuse``,
``reference``, ``external``, ``batch_size``, ``threads`` or ``mode`` change how the variant is
run; all other items override the config (``--cfg-options`` syntax), e.g.
``"model.backbone.with_cp=True;dtype=bf16"``. The first row is always the command line's own
settings. ``external=MODULE:FACTORY`` times ``FACTORY()`` (an ``nn.Module`` classifier taking a
batch and returning logits) instead of the config's model: forward, or a training step with
cross-entropy on random labels and the config's optimizer and gradient clipping.

``--alternate`` times all variants of a mode in one process instead, one iteration of each in
turn (A B A B ...), and reports per variant the median over turns of its throughput ratio to the
first variant: the most robust ratio on a machine whose speed drifts from minute to minute (no
per-variant memory then; the variants must share threads and malloc settings).

``--rounds N`` measures every variant N times, the variants interleaved (A B A B ...), and reports
for each the round with the median throughput; the "vs first" columns then show the median over
rounds of the ratio to the first variant measured in the same round. Shared machines drift by
10-20% over minutes: ratios are only meaningful between measurements taken close together.

Memory: the peak over the timed iterations (after the warm-up), and its increase over the memory
held before the first iteration (model and inputs; the increase thus includes optimizer state,
gradients and activations). On CPU that is the resident set size of the measuring process
(``VmHWM``, reset through ``/proc/self/clear_refs`` where Linux allows it, else ``ru_maxrss``
since the process started); on CUDA ``torch.cuda.max_memory_allocated``. Throughput is
``batch / median latency``. With the default ``--malloc fast`` glibc keeps freed memory in its
heap, so a CPU peak also counts fragmentation (it varies by +-10% between runs of the same
model); ``--malloc exact`` returns freed blocks at once and the peak follows the live tensors:
use it for memory comparisons, the default for speed.

Shared machines: "other load" is the number of cores other processes kept busy, on average,
during the timed iterations (from ``/proc/stat`` minus the measuring process's own CPU time).
Timings with other load are not comparable (with 2 threads on 2 cores OpenMP threads then wait
on each other and forwards slow down by up to 10x). ``--wait-idle 600 --max-other-load 0.1``
waits for a quiet machine and measures again when someone else got busy.
"""
import argparse
import datetime
import json
import math
import os
import os.path as osp
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

#: Run options a ``--compare`` variant may change (everything else is a config override).
RUN_KEYS = ('dtype', 'channels_last', 'compile', 'with_cp', 'fuse', 'reference', 'external',
            'batch_size',
            'threads', 'mode')
DTYPES = ('fp32', 'bf16', 'amp')
MODES = ('forward', 'train')
#: glibc malloc settings of the measuring processes. By default glibc serves blocks above a
#: (dynamic, <= 32 MiB) threshold with fresh mmap()s and returns them on free, so every
#: iteration page-faults its large activations in again: measured on EATFormer-Tiny at batch 32,
#: 150k page faults per forward with the threshold at its 32 MiB maximum, none with mmap() off.
#: So: no mmap() for allocations, no heap trimming, 256 MiB heap growth steps.
MALLOC_ENV = {
    'MALLOC_MMAP_MAX_': '0',
    'MALLOC_MMAP_THRESHOLD_': str(32 * 1024 * 1024),
    'MALLOC_TRIM_THRESHOLD_': str(64 * 1024**3),
    'MALLOC_TOP_PAD_': str(256 * 1024 * 1024),
}


#: ``--malloc exact``: glibc's defaults for large blocks (mmap above 128 KiB, freed memory
#: returned at once), so that the peak RSS follows the live tensors instead of the heap's
#: high-water mark after fragmentation. Slower (page faults): for the memory columns.
EXACT_MALLOC_ENV = {
    'MALLOC_MMAP_MAX_': '65536',
    'MALLOC_MMAP_THRESHOLD_': str(128 * 1024),
    'MALLOC_TRIM_THRESHOLD_': str(128 * 1024),
    'MALLOC_TOP_PAD_': '0',
}
MALLOC_MODES = {'fast': MALLOC_ENV, 'exact': EXACT_MALLOC_ENV}


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(
        description='Benchmark inference and training speed and memory of a config\'s model',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        '--mode',
        choices=MODES + ('both', ),
        default='both',
        help='forward (torch.inference_mode, eval), train (forward + loss + backward + '
        'optimizer step) or both (default)')
    parser.add_argument('--batch-size', type=int, default=32, help='batch (default 32)')
    parser.add_argument(
        '--shape',
        type=int,
        nargs='+',
        help='input H W (one value: square). Default: 224x224 for mmpretrain, 800x1280 for '
        'mmdet, 512x2048 for mmseg')
    parser.add_argument('--warmup', type=int, default=5, help='untimed iterations (default 5)')
    parser.add_argument('--iters', type=int, default=20, help='timed iterations (default 20)')
    parser.add_argument(
        '--threads', type=int, help='torch threads (default: torch\'s own choice)')
    parser.add_argument(
        '--dtype',
        choices=DTYPES,
        default='fp32',
        help='fp32, bf16 (autocast to bfloat16) or amp (autocast: float16 on CUDA, bfloat16 on '
        'CPU; with a gradient scaler for float16)')
    parser.add_argument(
        '--channels-last',
        action='store_true',
        default=None,
        help='convert model and input to channels_last (default: leave the model as built; '
        'mmevo backbones run channels-last by default, `channels_last=false` in --compare '
        'forces NCHW weights and input)')
    parser.add_argument(
        '--compile', action='store_true', help='torch.compile the backbone (counts graph breaks)')
    parser.add_argument(
        '--with-cp',
        action='store_true',
        help='gradient checkpointing in the backbone (model.backbone.with_cp=True)')
    parser.add_argument(
        '--fuse',
        action='store_true',
        help='forward only: call fuse() of the model parts that have one (exact inference '
        'folding of BatchNorms and scales)')
    parser.add_argument(
        '--reference',
        action='store_true',
        help='run the backbone\'s straightforward baseline formulation on the same weights '
        '(mmevo.testing.as_reference), to measure the fast path against it')
    parser.add_argument(
        '--pythonpath',
        action='append',
        default=[],
        metavar='DIR',
        help='prepended to sys.path of the measuring processes (for external=MODULE:FACTORY)')
    parser.add_argument(
        '--rounds',
        type=int,
        default=1,
        help='measure all variants this many times, interleaved; report the median round')
    parser.add_argument(
        '--malloc',
        choices=tuple(MALLOC_MODES),
        default='fast',
        help='glibc malloc settings of the measuring processes: "fast" (default; no page-fault '
        'spikes, but freed memory stays in the heap, so the peak RSS includes fragmentation) '
        'or "exact" (freed blocks returned: the peak RSS follows the live tensors; slower)')
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument(
        '--backbone-only',
        action='store_true',
        help='benchmark the backbone only; its training step is forward + sum of outputs '
        'backward + optimizer step')
    parser.add_argument(
        '--compare',
        nargs='+',
        default=[],
        metavar='VARIANT',
        help='more variants, each "KEY=VALUE[;KEY=VALUE...]" (see the module docstring)')
    parser.add_argument(
        '--alternate',
        action='store_true',
        help='speed only: time all variants of a mode in one process, one iteration of each in '
        'turn, and report per-iteration paired ratios (robust to a drifting machine; no '
        'per-variant memory)')
    parser.add_argument(
        '--roofline',
        action='store_true',
        help='forward: also count the model\'s multiply-adds (as get_flops.py does) and measure '
        'this machine\'s dense matrix-multiply peak (same threads and dtype), and report the '
        'achieved multiply-add rate, its fraction of the peak and the latency if every '
        'multiply-add ran at the peak')
    parser.add_argument('--json', help='write all results to this JSON file')
    parser.add_argument(
        '--profile',
        type=int,
        default=0,
        metavar='N',
        help='after timing, profile one more iteration with torch.profiler and report the N '
        'ops with the most self time')
    parser.add_argument(
        '--timeout', type=float, default=3600, help='seconds per measuring process')
    parser.add_argument(
        '--wait-idle',
        type=float,
        default=0,
        metavar='SECONDS',
        help='on a shared machine: before each measurement wait up to this long until other '
        'processes use less than a quarter of a core')
    parser.add_argument(
        '--max-other-load',
        type=float,
        metavar='CORES',
        help='re-measure (up to --retries times) when other processes kept more than this many '
        'cores busy on average during the timed iterations (reported as "other load")')
    parser.add_argument(
        '--retries', type=int, default=2, help='re-measurements allowed by --max-other-load')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config for all variants')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.alternate and (args.rounds != 1 or args.profile):
        parser.error('--alternate times all variants in one process: no --rounds or --profile')
    if args.worker is None:
        if args.shape is not None and len(args.shape) not in (1, 2):
            parser.error('--shape takes H W or a single size')
        if args.iters < 1 or args.warmup < 0 or args.batch_size < 1 or args.rounds < 1:
            parser.error('--iters, --rounds and --batch-size must be >= 1, --warmup >= 0')
    return args


# --------------------------------------------------------------------------------------------
# Variants (parent process)
# --------------------------------------------------------------------------------------------


def _to_bool(value: str) -> bool:
    if value.lower() in ('1', 'true', 'yes', 'on'):
        return True
    if value.lower() in ('0', 'false', 'no', 'off'):
        return False
    raise ValueError(f'expected a boolean, got {value!r}')


def parse_variant(text: str, base: dict) -> dict:
    """A ``--compare`` argument -> run settings (a copy of ``base`` with its changes)."""
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


def base_run(args: argparse.Namespace, argv: List[str]) -> dict:
    cfg_options = []
    for key, value in (args.cfg_options or {}).items():
        cfg_options.append(f'{key}={_format_override(value)}')
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


def _format_override(value) -> str:
    """A parsed ``--cfg-options`` value back to its command-line form."""
    if isinstance(value, (list, tuple)):
        inner = ','.join(_format_override(v) for v in value)
        return f'[{inner}]' if isinstance(value, list) else f'({inner})'
    return str(value)


def worker_env(threads: Optional[int], malloc: str = 'fast') -> Dict[str, str]:
    env = dict(os.environ)
    for key, value in MALLOC_MODES[malloc].items():  # values set by the user win
        env.setdefault(key, value)
    if threads:
        for key in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
            env[key] = str(threads)
    return env


def launch(run: dict, mode: str, timeout: float) -> dict:
    """Measure one (variant, mode) in a fresh interpreter; returns its result dict."""
    spec = dict(run, mode=mode)
    with tempfile.TemporaryDirectory(prefix='mmevo_bench_') as tmp:
        out = osp.join(tmp, 'result.json')
        spec['out'] = out
        cmd = [sys.executable, osp.abspath(__file__), run['config'], '--worker', json.dumps(spec)]
        try:
            proc = subprocess.run(
                cmd, env=worker_env(run['threads'], run.get('malloc', 'fast')),
                capture_output=True, text=True,
                timeout=timeout)
        except subprocess.TimeoutExpired:
            return dict(spec, error=f'timed out after {timeout:.0f} s')
        if proc.returncode != 0 or not osp.exists(out):
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
            return dict(spec, error=f'exit code {proc.returncode}: ' + '\n'.join(tail))
        with open(out) as f:
            return json.load(f)


# --------------------------------------------------------------------------------------------
# Measuring (worker process)
# --------------------------------------------------------------------------------------------


def _proc_status(key: str) -> Optional[int]:
    """``/proc/self/status`` entry in bytes (Linux), e.g. ``VmRSS``, ``VmHWM``."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def _busy_cpu_seconds() -> Optional[float]:
    """CPU seconds all processes of the machine spent busy so far (Linux ``/proc/stat``)."""
    try:
        with open('/proc/stat') as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')


def _other_load(busy0: Optional[float], own0: float, wall0: float) -> Optional[float]:
    """Cores kept busy by *other* processes since ``(busy0, own0, wall0)``, on average."""
    busy = _busy_cpu_seconds()
    if busy is None or busy0 is None:
        return None
    wall = time.perf_counter() - wall0
    return max(0., (busy - busy0) - (time.process_time() - own0)) / max(wall, 1e-9)


def wait_for_idle(max_wait: float, threshold: float = 0.25, window: float = 3.) -> float:
    """Wait (at most ``max_wait`` s) until other processes use < ``threshold`` cores.

    Returns the load of the last ``window``-second sample.
    """
    deadline = time.monotonic() + max_wait
    while True:
        busy0, own0, wall0 = _busy_cpu_seconds(), time.process_time(), time.perf_counter()
        time.sleep(window)
        load = _other_load(busy0, own0, wall0)
        if load is None or load < threshold or time.monotonic() >= deadline:
            return load if load is not None else 0.


def _minor_faults() -> int:
    """Minor page faults of this process so far (0 where unavailable)."""
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    except ImportError:
        return 0


def _peak_rss() -> int:
    hwm = _proc_status('VmHWM')
    if hwm is not None:
        return hwm
    import resource
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == 'darwin' else rss * 1024


class MemoryMeter:
    """Peak memory of the timed iterations, on CPU (RSS) or CUDA (allocated).

    ``start()`` (before the first iteration) records the baseline, the model and inputs;
    ``restart_peak()`` (after the warm-up) forgets warm-up transients such as
    ``torch.compile``'s; the peak is then that of the timed iterations.
    """

    def __init__(self, device):
        self.device = device
        self.baseline = 0
        self.reset_ok = True

    def start(self) -> None:
        import torch
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device)
        else:
            self.reset_ok = _reset_peak_rss()
            self.baseline = _proc_status('VmRSS') or 0

    def restart_peak(self) -> None:
        import torch
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.reset_ok:
            _reset_peak_rss()

    def result(self) -> dict:
        import torch
        if self.device.type == 'cuda':
            peak = torch.cuda.max_memory_allocated(self.device)
            kind = 'cuda_max_memory_allocated'
        else:
            peak = _peak_rss()
            kind = 'rss_vmhwm' if self.reset_ok else 'rss_maxrss_since_start'
        mib = 1024**2
        return dict(
            memory_kind=kind,
            peak_memory_mb=round(peak / mib, 1),
            baseline_memory_mb=round(self.baseline / mib, 1),
            peak_memory_delta_mb=round((peak - self.baseline) / mib, 1))


def _autocast(device, dtype: str):
    import contextlib

    import torch
    if dtype == 'fp32':
        return contextlib.nullcontext()
    if dtype == 'bf16' or device.type != 'cuda':
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, dtype=torch.float16)


def _flatten_tensors(obj) -> list:
    import torch
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _flatten_tensors(o)]
    return []


def _num_classes(cfg) -> int:
    model = cfg.model
    for path in (('head', ), ('roi_head', 'bbox_head'), ('decode_head', )):
        node = model
        for key in path:
            node = node.get(key) if hasattr(node, 'get') else None
            if node is None:
                break
        if isinstance(node, dict) and node.get('num_classes'):
            return min(int(node['num_classes']), 10)
    return 10


def _build_external(target: str, pythonpath: List[str]):
    """``FACTORY()`` of ``MODULE:FACTORY`` (``MODULE`` importable from ``pythonpath``)."""
    import importlib

    import torch.nn as nn
    for path in reversed(pythonpath):
        if path not in sys.path:
            sys.path.insert(0, path)
    module_name, factory = target.split(':')
    model = getattr(importlib.import_module(module_name), factory)()
    if not isinstance(model, nn.Module):
        raise TypeError(f'{target} returned {type(model).__name__}, not an nn.Module')
    return model


def _fuse(model) -> bool:
    """Call ``fuse()`` of the model, or of its direct children (backbone, head); True if any."""
    if callable(getattr(model, 'fuse', None)):
        model.fuse()
        return True
    found = False
    for child in model.children():
        if callable(getattr(child, 'fuse', None)):
            child.fuse()
            found = True
    return found


def _build_optimizer(cfg, module, backbone_only: bool):
    """The config's optimizer (param-wise settings included) and gradient clipping."""
    import torch
    from mmengine.optim import build_optim_wrapper

    wrapper_cfg = cfg.get('optim_wrapper')
    clip = None
    if wrapper_cfg is not None:
        wrapper_cfg = wrapper_cfg.copy()
        wrapper_cfg['type'] = 'OptimWrapper'  # autocast / scaling are done here
        wrapper_cfg.pop('loss_scale', None)
        clip = wrapper_cfg.get('clip_grad')
        try:
            return build_optim_wrapper(module, wrapper_cfg).optimizer, clip, 'config'
        except Exception as err:  # e.g. a constructor that expects the whole model
            if not backbone_only:
                raise
            print(f'[benchmark] config optimizer does not fit the backbone ({err}); '
                  'using AdamW', file=sys.stderr)
    return torch.optim.AdamW(module.parameters(), lr=1e-4, weight_decay=0.05), clip, 'AdamW'


def _prepare(spec: dict):
    """Build the variant of ``spec`` and its ``step()`` for ``spec['mode']`` (in the worker).

    Returns ``(step, sync, info)``: ``info`` describes what was built."""
    import torch
    import torch.nn.functional as F
    from mmengine.config import Config, DictAction

    import mmevo  # noqa: F401
    from mmevo.utils.flops import (
        build_model_from_cfg,
        count_params,
        default_input_shape,
        fake_data_samples,
    )

    if spec['threads']:
        torch.set_num_threads(spec['threads'])
    device = torch.device(spec['device'])
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('--device cuda but torch.cuda.is_available() is False')

    cfg = Config.fromfile(spec['config'])
    options = list(spec['cfg_options'])
    if spec['with_cp']:
        options.append('model.backbone.with_cp=True')
    if options:
        opt_parser = argparse.ArgumentParser()
        opt_parser.add_argument('--o', nargs='+', action=DictAction)
        cfg.merge_from_dict(opt_parser.parse_args(['--o', *options]).o)
    scope = cfg.get('default_scope')
    backbone_only = spec['backbone_only']
    train = spec['mode'] == 'train'

    torch.manual_seed(0)
    external = spec.get('external')
    if external:
        if spec.get('reference') or spec['with_cp'] or spec.get('fuse'):
            raise ValueError('an external model has no reference, with_cp or fuse() variant')
        model = _build_external(external, spec.get('pythonpath', []))
        backbone_only = False
    else:
        model = build_model_from_cfg(cfg, backbone_only=backbone_only)
    params = count_params(model)
    shape = spec['shape'] or default_input_shape(scope)
    if len(shape) == 1:
        shape = (shape[0], shape[0])
    height, width = shape
    batch = spec['batch_size']
    backbone = model if backbone_only or external else model.backbone
    in_channels = getattr(backbone, 'in_channels', 3)
    # None: the model's own layout (mmevo backbones convert to channels-last themselves)
    memory_format = {True: torch.channels_last, False: torch.contiguous_format}.get(
        spec['channels_last'])

    if spec.get('reference'):
        from mmevo.testing import as_reference
        if spec['with_cp'] or spec.get('fuse'):
            raise ValueError('the reference formulation has neither with_cp nor fuse()')
        if backbone_only:
            model = as_reference(model)
        else:
            model.backbone = as_reference(model.backbone)
    fused = bool(spec.get('fuse')) and not train and _fuse(model)
    model = model.to(device=device)
    if memory_format is not None:
        model = model.to(memory_format=memory_format)
    model.train(train)
    x = torch.randn(batch, in_channels, height, width, device=device)
    if memory_format is not None:
        x = x.contiguous(memory_format=memory_format)
    samples = None if backbone_only or external else fake_data_samples(
        scope, batch, height, width, with_labels=train, num_classes=_num_classes(cfg),
        device=device)
    labels = torch.randint(0, _num_classes(cfg), (batch, ), device=device) \
        if external and train else None

    macs = None
    if spec.get('roofline') and not train:  # multiply-adds of one image, as get_flops.py counts
        from mmevo.utils.flops import analyze_task_model
        task_model = not (backbone_only or external)
        macs = analyze_task_model(model, x[:1], scope, task_model)[0].flops

    if spec['compile']:
        import torch._dynamo
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        if backbone_only or external:
            model = torch.compile(model)
        else:
            model.backbone = torch.compile(model.backbone)

    autocast = _autocast(device, spec['dtype'])
    use_scaler = train and spec['dtype'] == 'amp' and device.type == 'cuda'
    if train:
        optimizer, clip, optimizer_source = _build_optimizer(cfg, model,
                                                              backbone_only or bool(external))
        scaler = torch.amp.GradScaler('cuda') if use_scaler else None
        max_norm = clip.get('max_norm') if isinstance(clip, dict) else None

        def step():
            with autocast:
                if external:
                    loss = F.cross_entropy(model(x).float(), labels, label_smoothing=0.1)
                elif backbone_only:
                    loss = sum(t.float().sum() for t in _flatten_tensors(model(x)))
                else:
                    loss, _ = model.parse_losses(model(x, samples, mode='loss'))
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if max_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    else:
        optimizer_source = None

        def step():
            with torch.inference_mode(), autocast:
                if backbone_only or external:
                    model(x)
                else:
                    model(x, samples, mode='tensor')

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    info = dict(
        shape=[height, width],
        scope=scope,
        params=params,
        threads_used=torch.get_num_threads(),
        optimizer=optimizer_source,
        fused=fused)
    if macs is not None:
        info['macs_per_image'] = macs
    return step, sync, info


#: Side of the square matrices whose product gives the machine's matrix-multiply peak.
PEAK_MM_SIZE = 4096
#: The CPU's other peak kernel: a 1x1 convolution of this channels-last batch by 512 filters.
PEAK_CONV_INPUT = (32, 512, 28, 28)


def matmul_peak(device, dtype: str, repeats: int = 5) -> dict:
    """Multiply-adds per second of dense matrix products in ``dtype`` on ``device``.

    ``torch.mm`` of two :data:`PEAK_MM_SIZE` square matrices and, on CPU, a 1x1 convolution
    of a channels-last :data:`PEAK_CONV_INPUT` batch (oneDNN's kernel, the one the models'
    projections run); each the median of ``repeats`` runs after a warm-up. Returns
    ``{kernel: multiply-adds per second}``.
    """
    import torch
    import torch.nn.functional as F

    tdtype = {'fp32': torch.float32, 'bf16': torch.bfloat16}.get(
        dtype, torch.float16 if device.type == 'cuda' else torch.bfloat16)
    n = PEAK_MM_SIZE
    a, b = (torch.randn(n, n, device=device, dtype=tdtype) for _ in range(2))
    kernels = {'mm': (lambda: torch.mm(a, b), n**3)}
    if device.type == 'cpu':
        B, C, H, W = PEAK_CONV_INPUT
        x = torch.randn(B, C, H, W, dtype=tdtype).contiguous(memory_format=torch.channels_last)
        w = torch.randn(512, C, 1, 1, dtype=tdtype).contiguous(memory_format=torch.channels_last)
        kernels['conv1x1'] = (lambda: F.conv2d(x, w), B * H * W * C * 512)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    rates = {}
    with torch.inference_mode():
        for name, (run, macs) in kernels.items():
            _time_step(run, sync)
            times = sorted(_time_step(run, sync) for _ in range(repeats))
            rates[name] = macs / _percentile(times, 50)
    return rates


def _add_roofline(result: dict, peaks: Dict[str, dict]) -> None:
    """Achieved multiply-add rate of a forward result against the matrix-multiply peak of its
    dtype (measured once per dtype into the cache ``peaks``); nothing without a MAC count."""
    macs = result.pop('macs_per_image', None)
    if macs is None:
        return
    import torch
    if result['dtype'] not in peaks:
        peaks[result['dtype']] = matmul_peak(torch.device(result['device']), result['dtype'])
    peak = peaks[result['dtype']]
    work = macs * result['batch_size']
    best = max(peak.values())
    achieved = work / (result['latency_ms']['median'] / 1e3)
    result['roofline_stats'] = dict(
        macs_per_image=macs,
        achieved_gmacs=round(achieved / 1e9, 3),
        peak_gmacs=round(best / 1e9, 3),
        peak_by_kernel_gmacs={k: round(v / 1e9, 3) for k, v in peak.items()},
        fraction_of_peak=round(achieved / best, 4),
        floor_ms=round(work / best * 1e3, 3))


def _time_step(step, sync) -> float:
    """Seconds of one ``step()``, device work included."""
    sync()
    start = time.perf_counter()
    step()
    sync()
    return time.perf_counter() - start


def _timed_result(spec: dict, info: dict, times: List[float],
                  other_load: Optional[float]) -> dict:
    """The result fields every measurement has: the spec, what was built, latency and
    throughput of the timed iterations, and the other processes' load meanwhile."""
    times_ms = sorted(t * 1e3 for t in times)
    median = _percentile(times_ms, 50)
    result = dict(
        {k: v for k, v in spec.items() if k != 'out'},
        **info,
        latency_ms=dict(
            median=round(median, 3),
            p90=round(_percentile(times_ms, 90), 3),
            mean=round(sum(times_ms) / len(times_ms), 3),
            min=round(times_ms[0], 3),
            max=round(times_ms[-1], 3)),
        throughput=round(spec['batch_size'] / (median / 1e3), 3),
        other_load=None if other_load is None else round(other_load, 2))
    if spec['compile']:
        result.update(_graph_breaks())
    return result


def _graph_breaks() -> dict:
    from torch._dynamo.utils import counters
    breaks = counters.get('graph_break', {})
    return dict(
        graph_breaks=int(sum(breaks.values())),
        graph_break_reasons=[str(k)[:300] for k in list(breaks)[:10]])


def measure(spec: dict) -> dict:
    """Build the variant and time ``spec['mode']``; runs inside the worker process."""
    import torch
    step, sync, info = _prepare(spec)
    device = torch.device(spec['device'])
    meter = MemoryMeter(device)
    meter.start()
    times = []
    first_iter_s = None
    faults = 0
    for i in range(spec['warmup'] + spec['iters']):
        if i == spec['warmup']:
            faults = _minor_faults()
            busy0, own0, wall0 = _busy_cpu_seconds(), time.process_time(), time.perf_counter()
            if i > 0:
                meter.restart_peak()
        elapsed = _time_step(step, sync)
        if i == 0:
            first_iter_s = elapsed
        if i >= spec['warmup']:
            times.append(elapsed)
    memory = meter.result()
    faults = _minor_faults() - faults
    other_load = _other_load(busy0, own0, wall0)
    profile = _profile(step, device, spec['profile_ops']) if spec.get('profile_ops') else None

    result = _timed_result(spec, info, times, other_load)
    _add_roofline(result, {})
    result.update(
        first_iter_s=round(first_iter_s, 3),
        page_faults_per_iter=round(faults / spec['iters']),
        **memory)
    if profile is not None:
        result['profile'] = profile
    return result


def measure_alternating(spec: dict) -> List[dict]:
    """Time the variants ``spec['alternate']`` in this one process, one iteration of each in
    turn (A B C A B C ...), so that all of them see the same machine state; each variant's
    ``paired_throughput_ratio`` is the median over iterations of its throughput relative to
    the first variant's in the same turn. Memory is not attributed to variants here."""
    specs = spec['alternate']
    prepared = [_prepare(s) for s in specs]
    times: List[List[float]] = [[] for _ in specs]
    busy0 = own0 = wall0 = None
    warmup, iters = specs[0]['warmup'], specs[0]['iters']
    for i in range(warmup + iters):
        if i == warmup:
            busy0, own0, wall0 = _busy_cpu_seconds(), time.process_time(), time.perf_counter()
        for (step, sync, _), ts in zip(prepared, times):
            elapsed = _time_step(step, sync)
            if i >= warmup:
                ts.append(elapsed)
    other_load = _other_load(busy0, own0, wall0)
    results = []
    peaks: Dict[str, dict] = {}  # per dtype
    for s, (_, _, info), ts in zip(specs, prepared, times):
        ratios = sorted(t0 / t for t0, t in zip(times[0], ts))
        result = _timed_result(s, info, ts, other_load)
        _add_roofline(result, peaks)
        result.update(
            iteration_ms=[round(t * 1e3, 3) for t in ts],
            paired_throughput_ratio=round(_percentile(ratios, 50), 4),
            paired_throughput_ratio_range=[round(ratios[0], 4), round(ratios[-1], 4)],
            peak_memory_mb=None,
            peak_memory_delta_mb=None)
        results.append(result)
    return results


def _profile(step, device, top: int) -> dict:
    """One profiled iteration: the ``top`` ops by self time (CPU, or CUDA on a GPU)."""
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


def _percentile(sorted_values: List[float], q: float) -> float:
    """Linear-interpolated percentile of already sorted values."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    pos = (len(sorted_values) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def machine_info() -> dict:
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


def _loadavg() -> Optional[List[float]]:
    """1/5/15-minute load averages: other processes competing for the cores skew timings."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _ratio(value, base) -> str:
    if value is None or not base:
        return '-'
    return f'{value / base:.2f}x'


def _mb(value) -> str:
    return '-' if value is None else f'{value:.0f}'


def format_table(results: List[dict]) -> str:
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
        memory = _ratio(res['peak_memory_delta_mb'], first['peak_memory_delta_mb'])
        if 'paired_throughput_ratio' in res:  # --rounds: median of same-round ratios
            speed = f"{res['paired_throughput_ratio']:.2f}x"
        if 'paired_memory_ratio' in res:
            memory = f"{res['paired_memory_ratio']:.2f}x"
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


def _measure_with_retries(run: dict, mode: str, args: argparse.Namespace) -> dict:
    for attempt in range(args.retries + 1):
        if args.wait_idle:
            wait_for_idle(args.wait_idle)
        res = launch(run, mode, args.timeout)
        busy = res.get('other_load')
        if (args.max_other_load is None or 'error' in res or busy is None
                or busy <= args.max_other_load or attempt == args.retries):
            break
        print(f'[benchmark]   other processes kept {busy:.2f} cores busy: measuring again',
              flush=True)
    res['attempts'] = attempt + 1
    return res


def _median_round(measured: List[dict]) -> dict:
    """The round with the median throughput, with every round's throughput and memory."""
    ok = [res for res in measured if 'error' not in res]
    if not ok:
        return measured[0]
    ok.sort(key=lambda res: res['throughput'])
    res = dict(ok[(len(ok) - 1) // 2])
    if len(measured) > 1:
        res['rounds'] = [None if 'error' in m else dict(
            throughput=m['throughput'], peak_memory_delta_mb=m['peak_memory_delta_mb'])
            for m in measured]
    return res


def _paired_ratios(jobs, rounds: List[List[dict]], results: List[dict]) -> None:
    """Per round, each variant against the first variant of its mode measured in the same
    round; the median of those ratios is what the table's "vs first" columns show."""
    firsts: Dict[str, int] = {}
    for j, (_, mode) in enumerate(jobs):
        f = firsts.setdefault(mode, j)
        for key, name in (('throughput', 'paired_throughput_ratio'),
                          ('peak_memory_delta_mb', 'paired_memory_ratio')):
            ratios = sorted(a[key] / b[key] for a, b in zip(rounds[j], rounds[f])
                            if 'error' not in a and 'error' not in b and b[key])
            if ratios and 'error' not in results[j]:
                results[j][name] = round(_percentile(ratios, 50), 4)


def _measure_alternating(jobs, args: argparse.Namespace) -> List[dict]:
    """``--alternate``: one worker per mode times all of that mode's variants in turn."""
    results: List[Optional[dict]] = [None] * len(jobs)
    for mode in MODES:
        index = [j for j, (_, m) in enumerate(jobs) if m == mode]
        if not index:
            continue
        runs = [jobs[j][0] for j in index]
        for key in ('threads', 'malloc', 'device'):
            if len({str(run.get(key)) for run in runs}) > 1:
                raise SystemExit(f'benchmark.py: error: --alternate needs one {key} for all '
                                 f'variants of a mode')
        labels = ', '.join(run['label'] for run in runs)
        print(f'[benchmark] {mode}, alternating {labels} ...', flush=True)
        spec = dict(runs[0], alternate=[dict(run, mode=mode) for run in runs])
        res = launch(spec, mode, args.timeout * len(runs))
        for k, j in enumerate(index):
            if 'error' in res:
                results[j] = dict(runs[k], mode=mode, error=res['error'])
                print(f"[benchmark]   failed: {res['error']}", flush=True)
                continue
            results[j] = res['results'][k]
            print(f"[benchmark]   {runs[k]['label']}: {results[j]['throughput']:.2f} img/s, "
                  f"{results[j]['paired_throughput_ratio']:.2f}x the first (median of "
                  f"{len(results[j]['iteration_ms'])} turns)", flush=True)
    return results


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.worker is not None:
        spec = json.loads(args.worker)
        result = dict(results=measure_alternating(spec)) if 'alternate' in spec \
            else measure(spec)
        with open(spec['out'], 'w') as f:
            json.dump(result, f)
        return result

    base = base_run(args, argv)
    try:
        runs = [base] + [parse_variant(text, base) for text in args.compare]
    except ValueError as err:
        raise SystemExit(f'benchmark.py: error: {err}')
    load_before = _loadavg()
    jobs = [(run, mode) for run in runs
            for mode in (MODES if run['mode'] == 'both' else (run['mode'], ))]
    rounds: List[List[dict]] = [[] for _ in jobs]
    if args.alternate:
        rounds = [[res] for res in _measure_alternating(jobs, args)]
    for r in range(0 if args.alternate else args.rounds):
        for (run, mode), measured in zip(jobs, rounds):
            tag = f' (round {r + 1}/{args.rounds})' if args.rounds > 1 else ''
            print(f"[benchmark] {run['label']}: {mode}{tag} ...", flush=True)
            res = _measure_with_retries(run, mode, args)
            if 'error' in res:
                print(f"[benchmark]   failed: {res['error']}", flush=True)
            else:
                print(f"[benchmark]   {res['throughput']:.2f} img/s, median "
                      f"{res['latency_ms']['median']:.1f} ms, peak {res['peak_memory_mb']:.0f} MB "
                      f"(+{res['peak_memory_delta_mb']:.0f} MB), other load "
                      f"{res.get('other_load')}", flush=True)
            measured.append(res)
    results = [_median_round(measured) for measured in rounds]
    if args.rounds > 1:
        _paired_ratios(jobs, rounds, results)

    meta = dict(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
        command=' '.join(shlex.quote(a) for a in ['python', sys.argv[0]] + argv),
        machine=machine_info(),
        malloc_env=MALLOC_MODES[args.malloc],
        threading_env={k: v for k, v in sorted(os.environ.items())
                       if k.startswith(('OMP_', 'GOMP_', 'KMP_', 'MKL_', 'MALLOC_'))},
        loadavg_before=load_before,
        loadavg_after=_loadavg())
    print()
    print(f"{args.config} | {args.device} | threads {args.threads or 'default'} | "
          f"{meta['date']} | load average before/after {load_before} / {meta['loadavg_after']}")
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
    report = dict(meta=meta, results=results)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
        print(f'results written to {args.json}')
    return report


if __name__ == '__main__':
    main()

# Copyright (c) mmevo contributors. All rights reserved.
"""Throughput, latency and peak memory of a config's model: inference and a training step.

Every (variant, mode) runs in its own fresh process, so peak memory is clean and the glibc
malloc thresholds (without which single forwards spike 10-60x on some machines) are set before
the interpreter starts. The work is done by :mod:`mmevo.benchmarking`. Examples::

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
    # importable from --pythonpath), on the same harness, alternating in one process
    python tools/analysis_tools/benchmark.py configs/eatformer/eatformer-small_8xb128_in1k.py \\
        --batch-size 32 --threads 2 --warmup 4 --iters 8 --alternate \\
        --pythonpath /path/to/EATFormer --compare external=model.eatformer:eatformer_small

    # their training memory: one process per model, glibc returning freed blocks
    python tools/analysis_tools/benchmark.py configs/eatformer/eatformer-small_8xb128_in1k.py \\
        --batch-size 32 --threads 2 --mode train --malloc exact --warmup 2 --iters 2 \\
        --pythonpath /path/to/EATFormer --compare external=model.eatformer:eatformer_small \\
        with_cp=true

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
first variant (``paired_throughput_ratio``, range in ``paired_throughput_ratio_range``). Shared
machines drift by 10-40% over minutes, so this is how speed ratios are measured; there is no
per-variant memory then, and the variants must share threads and malloc settings.

Memory: the peak over the timed iterations (after the warm-up), and its increase over the memory
held before the first iteration (model and inputs; the increase thus includes optimizer state,
gradients and activations). On CPU that is the resident set size of the measuring process; on
CUDA ``torch.cuda.max_memory_allocated``. Throughput is ``batch / median latency``. With the
default ``--malloc fast`` glibc keeps freed memory in its heap, so a CPU peak also counts
fragmentation (it varies by +-10% between runs of the same model); ``--malloc exact`` returns
freed blocks at once and the peak follows the live tensors: use it for memory comparisons, the
default for speed.

"other load" is the number of cores other processes kept busy, on average, during the timed
iterations; timings with other load are not comparable (with 2 threads on 2 cores, forwards
slow down by up to 10x).
"""
import argparse
import sys

from mmengine.config import DictAction

from mmevo.benchmarking import DTYPES, MALLOC_MODES, MODES, base_run, plan_jobs, run_benchmark


def parse_args(argv=None) -> argparse.Namespace:
    """Options; ``args.jobs`` holds the (run, mode) pairs to measure."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
        help='input H W (one value: square). Default: the test pipeline\'s crop for '
        'classification configs (224x224 when none), 800x1280 for mmdet, 512x2048 for mmseg')
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
        'turn, and report the median of same-turn throughput ratios (robust to a drifting '
        'machine; no per-variant memory)')
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
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config for all variants')
    args = parser.parse_args(argv)
    if args.alternate and args.profile:
        parser.error('--alternate times all variants in one process: no --profile')
    if args.shape is not None and len(args.shape) not in (1, 2):
        parser.error('--shape takes H W or a single size')
    if args.iters < 1 or args.warmup < 0 or args.batch_size < 1:
        parser.error('--iters and --batch-size must be >= 1, --warmup >= 0')
    try:
        args.jobs = plan_jobs(base_run(args), args.compare, args.alternate)
    except ValueError as err:
        parser.error(str(err))
    return args


def main(argv=None) -> dict:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    return run_benchmark(args.jobs, alternate=args.alternate, timeout=args.timeout,
                         json_path=args.json, command=['python', sys.argv[0], *argv])


if __name__ == '__main__':
    main()

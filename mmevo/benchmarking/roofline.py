# Copyright (c) mmevo contributors. All rights reserved.
"""A forward's multiply-adds against the machine's dense matrix-multiply peak (``--roofline``).

The multiply-adds are counted as ``tools/analysis_tools/get_flops.py`` counts them
(:func:`mmevo.utils.flops.analyze_task_model`); the peak is measured in the measuring process,
with its threads and dtype.
"""
from typing import Dict, Optional

from .stats import percentile, time_step

#: Side of the square matrices whose product gives the machine's matrix-multiply peak.
PEAK_MM_SIZE = 4096
#: The CPU's other peak kernel: a 1x1 convolution of this channels-last batch by 512 filters.
PEAK_CONV_INPUT = (32, 512, 28, 28)


def forward_macs(model, x, scope: Optional[str], task_model: bool) -> int:
    """Multiply-adds of one image of the batch ``x`` through ``model`` (a task model in
    ``mode='tensor'`` if ``task_model``, else ``model(x)``), as get_flops.py counts them."""
    from mmevo.utils.flops import analyze_task_model
    return analyze_task_model(model, x[:1], scope, task_model)[0].flops


def matmul_peak(device, dtype: str, repeats: int = 5) -> Dict[str, float]:
    """Multiply-adds per second of dense matrix products in ``dtype`` on ``device``.

    ``torch.mm`` of two :data:`PEAK_MM_SIZE` square matrices and, on CPU, a 1x1 convolution
    of a channels-last :data:`PEAK_CONV_INPUT` batch (oneDNN's kernel, the one the models'
    projections run); each the median of ``repeats`` runs after a warm-up.

    Returns:
        dict: ``{kernel: multiply-adds per second}``.
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
            time_step(run, sync)
            times = sorted(time_step(run, sync) for _ in range(repeats))
            rates[name] = macs / percentile(times, 50)
    return rates


def add_roofline(result: dict, peaks: Dict[str, dict]) -> None:
    """Turn a forward result's ``macs_per_image`` into its ``roofline_stats``.

    The achieved multiply-add rate at the median latency against the matrix-multiply peak of
    the result's dtype (measured once per dtype into the cache ``peaks``), its fraction of that
    peak and the latency if every multiply-add ran at it. Nothing without a MAC count.
    """
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

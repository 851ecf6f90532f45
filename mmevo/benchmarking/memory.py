# Copyright (c) mmevo contributors. All rights reserved.
"""Memory of a measuring process: glibc malloc settings and the peak of the timed iterations.

On CPU the peak is the resident set size (``VmHWM``, reset through ``/proc/self/clear_refs``
where Linux allows it, else ``ru_maxrss`` since the process started); on CUDA it is
``torch.cuda.max_memory_allocated``.
"""
import sys
from typing import Dict, Optional

#: ``--malloc fast`` (default). By default glibc serves blocks above a (dynamic, <= 32 MiB)
#: threshold with fresh mmap()s and returns them on free, so every iteration page-faults its
#: large activations in again: measured on EATFormer-Tiny at batch 32, 150k page faults per
#: forward with the threshold at its 32 MiB maximum, none with mmap() off. So: no mmap() for
#: allocations, no heap trimming, 256 MiB heap growth steps. Freed memory then stays in the
#: heap, so a CPU peak also counts fragmentation (+-10% between runs of the same model).
MALLOC_ENV = {
    'MALLOC_MMAP_MAX_': '0',
    'MALLOC_MMAP_THRESHOLD_': str(32 * 1024 * 1024),
    'MALLOC_TRIM_THRESHOLD_': str(64 * 1024**3),
    'MALLOC_TOP_PAD_': str(256 * 1024 * 1024),
}
#: ``--malloc exact``: glibc's defaults for large blocks (mmap above 128 KiB, freed memory
#: returned at once), so that the peak RSS follows the live tensors instead of the heap's
#: high-water mark after fragmentation. Slower (page faults): for memory comparisons.
EXACT_MALLOC_ENV = {
    'MALLOC_MMAP_MAX_': '65536',
    'MALLOC_MMAP_THRESHOLD_': str(128 * 1024),
    'MALLOC_TRIM_THRESHOLD_': str(128 * 1024),
    'MALLOC_TOP_PAD_': '0',
}
MALLOC_MODES: Dict[str, Dict[str, str]] = {'fast': MALLOC_ENV, 'exact': EXACT_MALLOC_ENV}


def proc_status(key: str) -> Optional[int]:
    """``/proc/self/status`` entry in bytes (Linux), e.g. ``VmRSS``, ``VmHWM``."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0); False where not allowed."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def peak_rss() -> int:
    """Peak resident set size of this process in bytes."""
    hwm = proc_status('VmHWM')
    if hwm is not None:
        return hwm
    import resource
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == 'darwin' else rss * 1024


def minor_faults() -> int:
    """Minor page faults of this process so far (0 where unavailable)."""
    try:
        import resource
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    except ImportError:
        return 0


class MemoryMeter:
    """Peak memory of the timed iterations, on CPU (RSS) or CUDA (allocated).

    ``start()`` (before the first iteration) records the baseline, the model and inputs;
    ``restart_peak()`` (after the warm-up) forgets warm-up transients such as
    ``torch.compile``'s; the peak is then that of the timed iterations, and its increase over
    the baseline includes optimizer state, gradients and activations.

    Args:
        device (torch.device): The device the model runs on.
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
            self.reset_ok = reset_peak_rss()
            self.baseline = proc_status('VmRSS') or 0

    def restart_peak(self) -> None:
        import torch
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.reset_ok:
            reset_peak_rss()

    def result(self) -> dict:
        """``memory_kind``, ``peak_memory_mb``, ``baseline_memory_mb`` and
        ``peak_memory_delta_mb`` (MiB, one decimal)."""
        import torch
        if self.device.type == 'cuda':
            peak = torch.cuda.max_memory_allocated(self.device)
            kind = 'cuda_max_memory_allocated'
        else:
            peak = peak_rss()
            kind = 'rss_vmhwm' if self.reset_ok else 'rss_maxrss_since_start'
        mib = 1024**2
        return dict(
            memory_kind=kind,
            peak_memory_mb=round(peak / mib, 1),
            baseline_memory_mb=round(self.baseline / mib, 1),
            peak_memory_delta_mb=round((peak - self.baseline) / mib, 1))

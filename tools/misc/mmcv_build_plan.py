# Copyright (c) mmevo contributors. All rights reserved.
"""Which mmcv ops ``tools/install.sh`` builds: CPU kernels only, or CPU + CUDA kernels.

    python tools/misc/mmcv_build_plan.py      # prints: "<kind> <wheelhouse suffix> <reason>"

CUDA ops are built when a CUDA toolkit (``nvcc``) is present, torch is a CUDA build, and a GPU
is visible; a toolkit without a GPU (e.g. the pip ``nvidia-cuda-nvcc`` package on a CPU machine)
gives CPU ops, because building and checking the CUDA kernels needs the device they are for.
``MMEVO_MMCV_CUDA=1`` forces a CUDA build (e.g. on a build host without a GPU), ``=0`` forbids
it. CUDA wheels are kept apart from CPU wheels (``-cu<version>`` wheelhouse suffix).
"""
import os
import re
import shutil
import subprocess
import sys
from typing import NamedTuple, Optional


class Plan(NamedTuple):
    kind: str  # 'cpu' or 'cuda'
    suffix: str  # wheelhouse suffix: '' or '-cu<version>'
    reason: str


def _nvcc_version(nvcc: str) -> Optional[str]:
    try:
        out = subprocess.run([nvcc, '--version'], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r'release (\d+\.\d+)', out)
    return match.group(1) if match else None


def decide(nvcc: Optional[str], nvcc_version: Optional[str], torch_cuda: Optional[str],
           gpu_visible: bool, force: str = 'auto') -> Plan:
    """The build plan from what the machine has (pure; tested)."""
    if force not in ('auto', '0', '1'):
        raise ValueError(f"MMEVO_MMCV_CUDA must be 'auto', '0' or '1', got {force!r}")
    if force == '0':
        return Plan('cpu', '', 'CPU ops only: MMEVO_MMCV_CUDA=0')
    if nvcc is None or nvcc_version is None:
        return Plan('cpu', '', 'CPU ops only: no CUDA toolkit (nvcc) found')
    if torch_cuda is None:
        return Plan('cpu', '', f'CPU ops only: CUDA toolkit {nvcc_version} found, but torch is '
                    'a CPU build')
    if not gpu_visible and force != '1':
        return Plan('cpu', '', f'CPU ops only: CUDA toolkit {nvcc_version} found, but no GPU is '
                    'visible (MMEVO_MMCV_CUDA=1 builds the CUDA ops anyway)')
    tag = nvcc_version.replace('.', '')
    return Plan('cuda', f'-cu{tag}', f'CPU + CUDA ops: CUDA toolkit {nvcc_version} ({nvcc}), '
                f'torch built for CUDA {torch_cuda}')


def main() -> int:
    import torch
    nvcc = shutil.which('nvcc')
    plan = decide(nvcc, _nvcc_version(nvcc) if nvcc else None, torch.version.cuda,
                  torch.cuda.is_available(), os.environ.get('MMEVO_MMCV_CUDA', 'auto'))
    print(plan.kind, plan.suffix or '-', plan.reason)
    return 0


if __name__ == '__main__':
    sys.exit(main())

# Copyright (c) mmevo contributors. All rights reserved.
"""tools/install.sh builds mmcv's CUDA ops where a toolkit, a CUDA torch and a GPU are present."""
import importlib.util
import os.path as osp
import re
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = osp.join(ROOT, 'tools', 'misc', 'mmcv_build_plan.py')


def _plan():
    spec = importlib.util.spec_from_file_location('mmcv_build_plan', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('nvcc,version,torch_cuda,gpu,force,kind,reason', [
    (None, None, '13.0', True, 'auto', 'cpu', 'no CUDA toolkit'),
    ('/usr/bin/nvcc', '12.4', None, True, 'auto', 'cpu', 'torch is a CPU build'),
    ('/usr/bin/nvcc', '12.4', '12.4', False, 'auto', 'cpu', 'no GPU is visible'),
    ('/usr/bin/nvcc', '12.4', '12.4', False, '1', 'cuda', 'CUDA toolkit 12.4'),
    ('/usr/bin/nvcc', '12.4', '12.4', True, 'auto', 'cuda', 'CPU \\+ CUDA ops'),
    ('/usr/bin/nvcc', '12.4', '12.4', True, '0', 'cpu', 'MMEVO_MMCV_CUDA=0'),
])
def test_decide(nvcc, version, torch_cuda, gpu, force, kind, reason):
    plan = _plan().decide(nvcc, version, torch_cuda, gpu, force)
    assert plan.kind == kind
    assert plan.suffix == ('-cu124' if kind == 'cuda' else '')
    assert re.search(reason, plan.reason)


def test_bad_override_is_named():
    with pytest.raises(ValueError, match="MMEVO_MMCV_CUDA must be 'auto', '0' or '1', got 'yes'"):
        _plan().decide(None, None, None, False, 'yes')


def test_prints_the_plan_of_this_machine():
    import torch
    run = subprocess.run([sys.executable, TOOL], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    kind, suffix, reason = run.stdout.split(' ', 2)
    assert kind in ('cpu', 'cuda') and reason.startswith(('CPU ops only', 'CPU + CUDA ops'))
    if not torch.cuda.is_available():
        assert (kind, suffix) == ('cpu', '-')

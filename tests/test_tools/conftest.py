# Copyright (c) mmevo contributors. All rights reserved.
import pytest
import torch
from tool_helpers import TOY_CONFIG, assert_ok, run_tool


@pytest.fixture(scope='session')
def toy_run(tmp_path_factory) -> str:
    """Work dir of one 4-iteration training run (checkpoints at iterations 2 and 4)."""
    work_dir = str(tmp_path_factory.mktemp('toy_run'))
    proc = run_tool(['train.py', TOY_CONFIG, '--work-dir', work_dir], cwd=work_dir)
    assert_ok(proc)
    return work_dir


@pytest.fixture(scope='module')
def one_thread():
    """Torch on one thread for a module's tests. Counting FLOPs or exporting needs one traced
    forward, not speed: OpenMP spinning on a busy 2-core machine made traces 10x slower, and
    ONNX Runtime and the PyTorch reference run on one thread too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

# Copyright (c) mmevo contributors. All rights reserved.
import pytest
from tool_helpers import TOY_CONFIG, assert_ok, run_tool


@pytest.fixture(scope='session')
def toy_run(tmp_path_factory) -> str:
    """Work dir of one 4-iteration training run (checkpoints at iterations 2 and 4)."""
    work_dir = str(tmp_path_factory.mktemp('toy_run'))
    proc = run_tool(['train.py', TOY_CONFIG, '--work-dir', work_dir], cwd=work_dir)
    assert_ok(proc)
    return work_dir

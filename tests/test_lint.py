# Copyright (c) mmevo contributors. All rights reserved.
"""The codebase is clean under the project's lint settings (ruff.toml: pycodestyle, pyflakes,
isort order, 100 columns)."""
import os.path as osp
import subprocess
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_ruff_is_clean():
    run = subprocess.run(
        [sys.executable, '-m', 'ruff', 'check', '--no-cache', 'mmevo', 'tools', 'tests', 'configs',
         'setup.py'], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]

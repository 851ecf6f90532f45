# Copyright (c) mmevo contributors. All rights reserved.
"""Helpers for running mmevo's tools as a user would: in a subprocess, on the toy task."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOY_DIR = osp.join(REPO, 'tests', 'data', 'toy_task')
TOY_CONFIG = osp.join(TOY_DIR, 'toy_regression.py')


def tool_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment of a tool run: the toy task importable, one thread per process."""
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (REPO, TOY_DIR, env.get('PYTHONPATH')) if p)
    env['PYTHON'] = sys.executable
    env.setdefault('OMP_NUM_THREADS', '1')
    env.update(extra or {})
    return env


def run_tool(args: List[str],
             cwd: str,
             timeout: float = 120,
             env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    """Run ``python tools/<script> ...`` (or ``bash tools/<x>.sh ...``) and capture its output."""
    script = osp.join(REPO, 'tools', args[0])
    cmd = ['bash', script] if script.endswith('.sh') else [sys.executable, script]
    return subprocess.run(
        cmd + list(args[1:]),
        cwd=cwd,
        env=env or tool_env(),
        capture_output=True,
        text=True,
        timeout=timeout)


def read_probe(work_dir: str, when: str, rank: int = 0) -> dict:
    with open(osp.join(work_dir, f'probe_{when}_rank{rank}.json')) as f:
        return json.load(f)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, (
        f'rc={proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n'
        f'--- stderr ---\n{proc.stderr[-6000:]}')


def load_tool(relpath: str):
    """Import ``tools/<relpath>`` as a module, to call its functions in-process."""
    import importlib.util
    name = 'mmevo_tool_' + relpath.replace('/', '_')[:-3]
    spec = importlib.util.spec_from_file_location(name, osp.join(REPO, 'tools', relpath))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

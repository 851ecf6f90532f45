# Copyright (c) mmevo contributors. All rights reserved.
"""``tools/train.py``: resume, load_from and refusal of a malicious checkpoint."""
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.runner import load_checkpoint
from tool_helpers import TOY_CONFIG, assert_ok, load_tool, read_probe, run_tool

import mmevo  # noqa: F401  (torch.load of Runner checkpoints below needs its allow-list)
from mmevo.utils import UnsafeCheckpointError


def _checkpoint_params(path: str) -> dict:
    state = torch.load(path, map_location='cpu', weights_only=True)['state_dict']
    return {k: v.double().flatten().tolist() for k, v in state.items() if v.is_floating_point()}


def test_single_process_run(toy_run):
    before, after = read_probe(toy_run, 'before'), read_probe(toy_run, 'after')
    assert (before['iter'], after['iter']) == (0, 4)
    # The config asks for SyncBN: one process must run it as BN, unwrapped.
    assert not after['sync_bn_left']
    assert after['wrapper'].endswith('ToyRegressor')
    assert osp.isfile(osp.join(toy_run, 'iter_2.pth'))
    assert osp.isfile(osp.join(toy_run, 'iter_4.pth'))
    assert after['params'] == _checkpoint_params(osp.join(toy_run, 'iter_4.pth'))


def test_resume_continues_identically(toy_run, tmp_path):
    """``--resume`` (latest checkpoint of the work dir, here iteration 2 of 4) starts there with
    its weights and, with the same data order, momentum and lr schedule, ends on the weights
    of the uninterrupted run."""
    work_dir = str(tmp_path / 'run')
    shutil.copytree(toy_run, work_dir, ignore=shutil.ignore_patterns('probe_*', 'iter_4.pth'))
    with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(work_dir, 'iter_2.pth'))
    proc = run_tool(['train.py', TOY_CONFIG, '--work-dir', work_dir, '--resume'], cwd=work_dir)
    assert_ok(proc)
    assert 'resumed epoch: 0, iter: 2' in proc.stdout + proc.stderr
    before = read_probe(work_dir, 'before')
    assert before['iter'] == 2
    assert before['params'] == _checkpoint_params(osp.join(toy_run, 'iter_2.pth'))
    after, reference = read_probe(work_dir, 'after'), read_probe(toy_run, 'after')
    assert after['iter'] == 4
    for name, values in reference['params'].items():
        torch.testing.assert_close(
            torch.tensor(after['params'][name]), torch.tensor(values), rtol=1e-6, atol=1e-7)


def test_resume_option_sets_config(monkeypatch):
    monkeypatch.setenv('LOCAL_RANK', '0')  # parse_args exports it
    tool = load_tool('train.py')
    for argv, resume, load_from in (([], False, None), (['--resume'], True, None),
                                    (['--resume', 'a/iter_2.pth'], True, 'a/iter_2.pth')):
        args = tool.parse_args([TOY_CONFIG] + argv)
        cfg = tool.merge_args(Config(dict(optim_wrapper=dict())), args)
        assert (cfg.get('resume', False), cfg.get('load_from')) == (resume, load_from)


def test_load_from_runner_checkpoint(toy_run, tmp_path):
    """``load_from`` takes the weights of a full Runner checkpoint and starts at iteration 0."""
    work_dir = str(tmp_path)
    ckpt = osp.join(toy_run, 'iter_4.pth')
    proc = run_tool(['train.py', TOY_CONFIG, '--work-dir', work_dir, '--cfg-options',
                     f'load_from={ckpt}', 'train_cfg.max_iters=1'], cwd=work_dir)
    assert_ok(proc)
    before = read_probe(work_dir, 'before')
    assert before['iter'] == 0
    assert before['params'] == _checkpoint_params(ckpt)


EVIL = '''
import os, sys, torch

class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, ('touch ' + self.marker, ))

def save(path, marker):
    torch.save(dict(meta=dict(epoch=1, iter=2), state_dict={}, message_hub=Payload(marker)), path)

folder = sys.argv[1]
save(os.path.join(folder, 'evil.pth'), os.path.join(folder, 'payload_ran'))
# Control: the same payload does run when unpickled without weights_only.
save(os.path.join(folder, 'control.pth'), os.path.join(folder, 'control_ran'))
torch.load(os.path.join(folder, 'control.pth'), weights_only=False)
'''


@pytest.fixture(scope='module')
def evil_checkpoint(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp('evil')
    subprocess.run([sys.executable, '-c', EVIL, str(folder)], check=True)
    assert (folder / 'control_ran').exists(), 'the crafted payload is not a real one'
    assert not (folder / 'payload_ran').exists()
    return str(folder / 'evil.pth')


def test_malicious_checkpoint_refused_by_resume(evil_checkpoint, tmp_path):
    marker = osp.join(osp.dirname(evil_checkpoint), 'payload_ran')
    work_dir = str(tmp_path / 'work_dir')
    proc = run_tool(['train.py', TOY_CONFIG, '--work-dir', work_dir, '--resume', evil_checkpoint],
                    cwd=str(tmp_path))
    assert proc.returncode != 0
    assert 'UnsafeCheckpointError' in proc.stderr, proc.stderr[-3000:]
    assert 'Refusing to load checkpoint' in proc.stderr
    assert 'posix.system' in proc.stderr  # the message names what was refused
    assert not osp.exists(marker), 'the checkpoint ran code'
    # Refused before training started.
    assert not osp.exists(osp.join(work_dir, 'probe_before_rank0.json'))


def test_malicious_checkpoint_refused_by_load_from(evil_checkpoint):
    """``load_from`` and ``init_cfg=dict(type='Pretrained')`` load through the same function."""
    with pytest.raises(UnsafeCheckpointError, match='posix.system'):
        load_checkpoint(nn.Linear(2, 2), evil_checkpoint)
    marker = osp.join(osp.dirname(evil_checkpoint), 'payload_ran')
    assert not osp.exists(marker), 'the checkpoint ran code'

# Copyright (c) mmevo contributors. All rights reserved.
"""The demo Mask R-CNN config on 2 CPU processes (``tools/dist_train.sh``), killed after its first
checkpoint and resumed with ``--resume``: it restarts at that iteration with those weights and
finishes, both ranks ending with the same weights."""
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

from mmevo.datasets import demo_data

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DET_CONFIG = osp.join(ROOT, 'configs', 'demo', 'demo_mask_rcnn_eatformer_mobile.py')
PROBE_DIR = osp.join(ROOT, 'tests', 'data', 'demo_probe')
sys.path.insert(0, PROBE_DIR)
from demo_probe import state_digest  # noqa: E402

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available(), reason='exercises the CPU (gloo) path of the launcher')

# 12 training scenes, 2 per rank and batch: 3 iterations per epoch, a checkpoint every epoch.
RUN_CONFIG = f"""_base_ = {DET_CONFIG!r}
custom_imports = dict(imports=['demo_probe'], allow_failed_imports=False)
custom_hooks = [dict(type='StateDigestHook')]
train_cfg = dict(max_epochs=2, val_interval=2)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=True)]
train_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False)
val_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False)
test_dataloader = dict(batch_size=2, num_workers=0, persistent_workers=False)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=-1))
"""


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _launch(cwd, config, work_dir, *extra):
    env = dict(os.environ, PORT=str(_free_port()), PYTHON=sys.executable, OMP_NUM_THREADS='1')
    env['PYTHONPATH'] = os.pathsep.join(p for p in (ROOT, PROBE_DIR, env.get('PYTHONPATH')) if p)
    return subprocess.Popen(
        ['bash', osp.join(ROOT, 'tools', 'dist_train.sh'), config, '2', '--work-dir', work_dir,
         *extra],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)


def _descendants(pid: int) -> list:
    """Process ids below ``pid`` (torchrun puts its workers in sessions of their own)."""
    children = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_tree(pid: int) -> None:
    """SIGKILL a launcher and every process it started, as a crash or a killed job would."""
    for p in [pid] + _descendants(pid):
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _digest(work_dir, when, rank):
    with open(osp.join(work_dir, f'digest_{when}_rank{rank}.json')) as f:
        return json.load(f)


def test_dist_train_killed_and_resumed(tmp_path):
    demo_data.generate(str(tmp_path / 'data' / 'demo'), num_train=12, num_val=4,
                       cls_train_per_class=1, cls_val_per_class=1)
    config = tmp_path / 'demo_det_dist.py'
    config.write_text(RUN_CONFIG)
    work_dir = str(tmp_path / 'work')
    first_ckpt = osp.join(work_dir, 'epoch_1.pth')
    last = osp.join(work_dir, 'last_checkpoint')

    # First run: kill the whole process group as soon as epoch 1's checkpoint is complete.
    proc = _launch(str(tmp_path), str(config), work_dir)
    deadline = time.time() + 400
    while time.time() < deadline and proc.poll() is None:
        if osp.isfile(last) and open(last).read().strip().endswith('epoch_1.pth'):
            break
        time.sleep(0.2)
    alive = proc.poll() is None
    _kill_tree(proc.pid)
    out = proc.communicate()[0]
    assert alive, f'the first run ended before it could be killed:\n{out[-4000:]}'
    assert osp.isfile(first_ckpt), out[-4000:]
    assert not osp.exists(osp.join(work_dir, 'epoch_2.pth')), 'killed too late'
    assert not osp.exists(osp.join(work_dir, 'digest_after_rank0.json'))

    # Second run: --resume takes the work dir's last checkpoint and finishes.
    proc = _launch(str(tmp_path), str(config), work_dir, '--resume')
    out = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, out[-6000:]
    assert 'resumed epoch: 1, iter: 3' in out, out[-4000:]
    assert 'coco/bbox_mAP' in out and 'coco/segm_mAP' in out

    ckpt = torch.load(first_ckpt, map_location='cpu', weights_only=True)
    expected = state_digest(ckpt['state_dict'])
    for rank in (0, 1):
        before = _digest(work_dir, 'before', rank)
        assert (before['world_size'], before['epoch'], before['iter']) == (2, 1, 3)
        assert before['digest'] == expected, f'rank {rank} did not resume the checkpoint weights'
        after = _digest(work_dir, 'after', rank)
        assert (after['epoch'], after['iter']) == (2, 6)
    weights = [k for k in expected if 'running_' not in k]
    after0, after1 = (_digest(work_dir, 'after', r)['digest'] for r in (0, 1))
    assert all(after0[k] == after1[k] for k in weights), 'ranks ended with different weights'
    assert after0 != expected, 'the resumed run did not train'
    assert osp.isfile(osp.join(work_dir, 'epoch_2.pth'))

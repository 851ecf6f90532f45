# Copyright (c) mmevo contributors. All rights reserved.
"""``tools/dist_train.sh`` / ``dist_test.sh`` with 2 CPU processes (torchrun + gloo)."""
import glob
import os.path as osp
import pickle

import pytest
import torch
from tool_helpers import TOY_CONFIG, assert_ok, free_port, read_probe, run_tool, tool_env

pytestmark = pytest.mark.skipif(
    torch.cuda.is_available(), reason='exercises the CPU (gloo) path of the launchers')


@pytest.fixture(scope='module')
def dist_run(tmp_path_factory) -> str:
    work_dir = str(tmp_path_factory.mktemp('dist_run'))
    env = tool_env(dict(PORT=str(free_port())))
    proc = run_tool(['dist_train.sh', TOY_CONFIG, '2', '--work-dir', work_dir],
                    cwd=work_dir, env=env, timeout=150)
    assert_ok(proc)
    return work_dir


def test_two_cpu_ranks_train(dist_run):
    probes = [read_probe(dist_run, 'after', rank) for rank in (0, 1)]
    for rank, probe in enumerate(probes):
        assert probe['rank'] == rank
        assert probe['world_size'] == 2
        assert probe['iter'] == 4
        # mmevo's wrapper took over (device_ids=None) and SyncBN fell back to BN on CPU.
        assert probe['wrapper'] == 'mmevo.engine.model_wrappers.MMDistributedDataParallel'
        assert not probe['sync_bn_left']
    # DDP keeps the trainable weights identical on both ranks.
    weights = [k for k in probes[0]['params'] if 'running' not in k]
    assert weights
    for name in weights:
        assert probes[0]['params'][name] == probes[1]['params'][name], name
    assert osp.isfile(osp.join(dist_run, 'iter_4.pth'))
    logs = glob.glob(osp.join(dist_run, '*', '*.log'))
    assert logs and any('Iter(train) [4/4]' in open(p).read() for p in logs)


def test_two_cpu_ranks_test(dist_run, tmp_path):
    out = str(tmp_path / 'preds.pkl')
    env = tool_env(dict(PORT=str(free_port())))
    proc = run_tool(['dist_test.sh', TOY_CONFIG, osp.join(dist_run, 'iter_4.pth'), '2',
                     '--work-dir', str(tmp_path), '--out', out],
                    cwd=str(tmp_path), env=env, timeout=120)
    assert_ok(proc)
    assert 'mse' in proc.stdout + proc.stderr
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 16  # both ranks' shards gathered, padding dropped

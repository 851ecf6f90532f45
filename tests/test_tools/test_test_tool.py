# Copyright (c) mmevo contributors. All rights reserved.
"""``tools/test.py``: evaluate a checkpoint and dump the predictions."""
import os.path as osp
import pickle

import pytest
from mmengine.config import Config
from tool_helpers import TOY_CONFIG, assert_ok, load_tool, run_tool


def test_evaluate_and_dump(toy_run, tmp_path):
    out = str(tmp_path / 'preds.pkl')
    proc = run_tool(['test.py', TOY_CONFIG, osp.join(toy_run, 'iter_4.pth'), '--work-dir',
                     str(tmp_path), '--out', out], cwd=str(tmp_path))
    assert_ok(proc)
    assert 'Iter(test) [2/2]' in proc.stdout + proc.stderr
    assert 'mse:' in proc.stdout + proc.stderr
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 16 and {'pred', 'target'} <= set(preds[0])


def test_bad_arguments(capsys):
    tool = load_tool('test.py')
    with pytest.raises(SystemExit) as err:
        tool.parse_args([TOY_CONFIG, 'x.pth', '--out', 'preds.json'])
    assert err.value.code == 2 and '--out must be a .pkl' in capsys.readouterr().err


@pytest.mark.parametrize('scope,expected', [
    ('mmdet', dict(draw=True, test_out_dir='vis')),
    ('mmpretrain', dict(enable=True, out_dir='vis')),
])
def test_show_dir_per_task(scope, expected):
    tool = load_tool('test.py')
    cfg = Config(dict(default_hooks=dict(visualization=dict(type='VisualizationHook'))))
    tool.enable_visualization(cfg, scope, 'vis')
    assert cfg.default_hooks.visualization == dict(type='VisualizationHook', **expected)
    cfg = Config(dict(default_hooks=dict(visualization=dict(type='SegVisualizationHook')),
                      visualizer=dict(type='SegLocalVisualizer')))
    tool.enable_visualization(cfg, 'mmseg', 'vis')
    assert cfg.default_hooks.visualization.draw and cfg.visualizer.save_dir == 'vis'
    with pytest.raises(SystemExit, match='visualization hook'):
        tool.enable_visualization(Config(dict(default_hooks=dict())), scope, 'vis')


def test_dump_metric_per_task():
    tool = load_tool('test.py')
    cfg = Config(dict(test_evaluator=dict(type='CocoMetric')))
    tool.add_dump_metric(cfg, 'mmdet', 'out.pkl')
    assert cfg.test_evaluator == [
        dict(type='CocoMetric'), dict(type='mmdet.DumpDetResults', out_file_path='out.pkl')]
    cfg = Config(dict(test_evaluator=[dict(type='IoUMetric')]))
    tool.add_dump_metric(cfg, 'mmseg', 'out.pkl')
    assert cfg.test_evaluator[-1] == dict(type='mmengine.DumpResults', out_file_path='out.pkl')

# Copyright (c) mmevo contributors. All rights reserved.
"""The demo tasks learn: shortened demo schedules must reach far above chance.

Each test trains the README's demo config (``configs/demo``, EATFormer-Mobile from scratch on the
embedded synthetic data) for the first part of its own schedule with ``tools/demo.py`` and
checks the library's metric against a threshold set from measured runs (``SCHEDULES`` below).
A regression like the channels-last maps that reached mmcv's RoIAlign (Mask R-CNN trained to
bbox mAP 0.001) fails here. Full-schedule results are in configs/demo/README.md.
"""
import glob
import importlib.util
import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

#: task -> (config overrides that cut the schedule, {metric: (threshold, measured, chance)}).
#: The measured values are those of the shortened run on 2 CPU cores (2026-12-06); the
#: thresholds leave room for the non-determinism of multi-threaded CPU kernels and stay far
#: above chance.
SCHEDULES = {
    'cls': (['train_cfg.max_epochs=3', 'train_cfg.val_interval=3',
             'default_hooks.checkpoint.interval=3'],
            {'accuracy/top1': (70., 96.67, 25.)}),
    'det': (['train_cfg.max_epochs=2', 'train_cfg.val_interval=2',
             'default_hooks.checkpoint.interval=2'],
            {'coco/bbox_mAP': (0.25, 0.415, 0.0), 'coco/segm_mAP': (0.25, 0.414, 0.0)}),
    'seg': (['train_cfg.max_iters=100', 'train_cfg.val_interval=100',
             'default_hooks.checkpoint.interval=100'],
            {'mIoU': (50., 90.59, 17.6)}),
}


def _demo_tool():
    spec = importlib.util.spec_from_file_location('mmevo_demo_tool',
                                                  osp.join(ROOT, 'tools', 'demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def demo_data(tmp_path_factory):
    """The full demo dataset, as ``bash tools/run_demo.sh`` generates it."""
    from mmevo.datasets import demo_data
    return demo_data.generate(str(tmp_path_factory.mktemp('demo') / 'data'))


@pytest.mark.parametrize('task', sorted(SCHEDULES))
def test_demo_task_learns(task, demo_data, tmp_path):
    overrides, thresholds = SCHEDULES[task]
    result, = _demo_tool().main(['--task', task, '--work-dir', str(tmp_path), '--data-root',
                                 demo_data, '--num-vis', '2', '--cfg-options', *overrides])
    metrics = result['metrics']
    for key, (threshold, measured, chance) in thresholds.items():
        assert metrics[key] >= threshold, (
            f'{task}: {key}={metrics[key]:.4f} after the shortened schedule; measured '
            f'{measured} there, chance {chance}: the model did not learn')
    assert osp.isfile(result['vis'])
    assert glob.glob(osp.join(tmp_path, task, '*.pth')), 'no checkpoint written'

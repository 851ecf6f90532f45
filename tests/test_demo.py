# Copyright (c) mmevo contributors. All rights reserved.
"""The embedded demo: data generator, end-to-end training/evaluation, configs from outside."""
import filecmp
import glob
import importlib.util
import json
import math
import os
import os.path as osp
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import mmevo  # noqa: F401  (registers the mmevo:: config prefix)
from mmevo.datasets import demo_data

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DET_CONFIG = osp.join(ROOT, 'configs', 'demo', 'demo_mask_rcnn_eatformer_mobile.py')
SMALL = dict(num_train=12, num_val=6, cls_train_per_class=4, cls_val_per_class=2)


@pytest.fixture(scope='module')
def small_data(tmp_path_factory):
    return demo_data.generate(str(tmp_path_factory.mktemp('demo') / 'data'), **SMALL)


def _files(root):
    return sorted(osp.relpath(p, root) for p in glob.glob(osp.join(root, '**', '*'),
                                                          recursive=True) if osp.isfile(p))


def test_generator_is_deterministic(small_data, tmp_path):
    again = demo_data.generate(str(tmp_path / 'again'), **SMALL)
    files = _files(small_data)
    assert files == _files(again)
    assert len(files) > 50
    _, mismatch, errors = filecmp.cmpfiles(small_data, again, files, shallow=False)
    assert not mismatch and not errors
    other = demo_data.generate(str(tmp_path / 'other'), seed=1, **SMALL)
    _, mismatch, _ = filecmp.cmpfiles(small_data, other, files, shallow=False)
    assert mismatch, 'another seed must give other data'


def test_generator_skips_existing_data(small_data):
    meta = osp.join(small_data, 'demo_data.json')
    mtime = os.stat(meta).st_mtime_ns
    demo_data.generate(small_data, **SMALL)
    assert os.stat(meta).st_mtime_ns == mtime


def test_coco_annotations_are_valid(small_data):
    from pycocotools.coco import COCO
    for split, num in (('train', SMALL['num_train']), ('val', SMALL['num_val'])):
        coco = COCO(osp.join(small_data, 'coco', 'annotations', f'instances_{split}.json'))
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(demo_data.CLASSES)
        assert len(coco.getImgIds()) == num
        anns = coco.loadAnns(coco.getAnnIds())
        assert len(anns) >= num  # at least one shape per scene on average
        for ann in anns:
            info = coco.loadImgs(ann['image_id'])[0]
            assert osp.isfile(osp.join(small_data, 'coco', split, info['file_name']))
            mask = coco.annToMask(ann)
            assert mask.shape == (info['height'], info['width'])
            assert ann['iscrowd'] == 0 and ann['area'] == int(mask.sum()) > 0
            ys, xs = np.nonzero(mask)
            x, y, w, h = ann['bbox']
            assert (x, y, x + w, y + h) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert len({a['category_id'] for a in anns}) >= 3


def test_semantic_masks_match_instances(small_data):
    from pycocotools.coco import COCO
    coco = COCO(osp.join(small_data, 'coco', 'annotations', 'instances_train.json'))
    for img in coco.loadImgs(coco.getImgIds()):
        name = osp.splitext(img['file_name'])[0]
        seg = np.asarray(Image.open(osp.join(small_data, 'ade', 'annotations', 'training',
                                             name + '.png')))
        assert seg.dtype == np.uint8 and set(np.unique(seg)) <= set(range(6))
        assert (seg == 1).any() and (seg == 0).any()  # background and the ignore band
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img['id'])):
            labels = seg[coco.annToMask(ann) > 0]
            # Instance pixels carry the class (2 + index) or the ignore band on boundaries.
            assert set(np.unique(labels)) <= {0, ann['category_id'] + 1}
            assert (labels == ann['category_id'] + 1).any()
        assert osp.isfile(osp.join(small_data, 'ade', 'images', 'training', name + '.jpg'))


def test_classification_folders(small_data):
    for split, num in (('train', SMALL['cls_train_per_class']),
                       ('val', SMALL['cls_val_per_class'])):
        root = osp.join(small_data, 'imagenet', split)
        assert sorted(os.listdir(root)) == sorted(demo_data.CLASSES)
        for name in demo_data.CLASSES:
            files = sorted(os.listdir(osp.join(root, name)))
            assert len(files) == num
            assert Image.open(osp.join(root, name, files[0])).size == (64, 64)


def test_cli_writes_data(tmp_path):
    demo_data.main(['--out', str(tmp_path / 'd'), '--num-train', '2', '--num-val', '1',
                    '--cls-train-per-class', '1', '--cls-val-per-class', '1'])
    assert osp.isfile(tmp_path / 'd' / 'coco' / 'annotations' / 'instances_val.json')


def _load_demo_tool():
    spec = importlib.util.spec_from_file_location('mmevo_demo_tool',
                                                  osp.join(ROOT, 'tools', 'demo.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_trains_and_evaluates_all_tasks(tmp_path):
    """tools/demo.py --quick: a few iterations per task, then evaluation and drawings."""
    demo = _load_demo_tool()
    results = {r['task']: r for r in demo.main(['--quick', '--work-dir', str(tmp_path),
                                                '--num-vis', '4'])}
    assert set(results) == {'cls', 'det', 'seg'}
    expected = {
        'cls': ['accuracy/top1'],
        'det': ['coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50'],
        'seg': ['mIoU', 'aAcc'],
    }
    for task, keys in expected.items():
        metrics = results[task]['metrics']
        for key in keys:
            assert key in metrics, (task, sorted(metrics))
            # CocoMetric reports -1 for "no prediction / no gt"; all else must be a number.
            assert math.isfinite(metrics[key]), (task, key, metrics[key])
        assert osp.isfile(results[task]['vis'])
        assert len(glob.glob(osp.join(results[task]['vis_dir'], '*.png'))) == 5
        assert glob.glob(osp.join(tmp_path, task, '*.pth')), 'no checkpoint written'


def test_mmevo_base_from_a_config_outside_the_repo(tmp_path):
    from mmengine.config import Config
    cfg_file = tmp_path / 'my_detector.py'
    cfg_file.write_text("_base_ = 'mmevo::mask_rcnn/eatformer_s_3x.py'\n"
                        "model = dict(backbone=dict(init_cfg=None))\n"
                        "train_dataloader = dict(batch_size=2)\n")
    cfg = Config.fromfile(str(cfg_file))
    assert cfg.default_scope == 'mmdet'
    assert cfg.model.backbone.type == 'mmevo.EATFormer'
    assert cfg.model.backbone.arch == 'small' and cfg.model.backbone.init_cfg is None
    assert cfg.model.neck.in_channels == [64, 128, 320, 448]
    assert cfg.train_cfg.max_epochs == 36 and cfg.train_dataloader.batch_size == 2
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.clip_grad.max_norm == 5
    pipeline = [t['type'] for t in cfg.train_dataloader.dataset.pipeline]
    assert 'RandomChoice' in pipeline


def test_mim_train_mmdet_with_the_demo_config(tmp_path):
    """`mim train mmdet <mmevo demo det config> --launcher none` (mmdet's own tools/train.py)."""
    mim = shutil.which('mim', path=osp.dirname(sys.executable)) or shutil.which('mim')
    if mim is None:
        pytest.fail('openmim is not installed (requirements/optional.txt)')
    demo_data.generate(str(tmp_path / 'data' / 'demo'), **SMALL)
    work_dir = tmp_path / 'work'
    cmd = [
        mim, 'train', 'mmdet', DET_CONFIG, '--launcher', 'none', '--work-dir', str(work_dir),
        '--cfg-options', 'train_cfg.max_epochs=1', 'train_dataloader.batch_size=4',
        'train_dataloader.num_workers=0', 'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers=False',
        'default_hooks.logger.interval=1', 'param_scheduler=[]'
    ]
    env = dict(os.environ, PATH=osp.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
    # cwd holds data/demo, the relative data root of the demo config.
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    assert 'coco/bbox_mAP' in log, log[-4000:]
    assert glob.glob(str(work_dir / 'epoch_1.pth')), log[-2000:]
    with open(glob.glob(str(work_dir / '*' / 'vis_data' / 'scalars.json'))[0]) as f:
        assert any('coco/segm_mAP' in json.loads(line) for line in f)

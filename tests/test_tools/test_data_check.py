# Copyright (c) mmevo contributors. All rights reserved.
"""The pre-flight data check: missing datasets are one line, before anything is built."""
import os
import os.path as osp

import pytest
from mmengine.config import Config
from tool_helpers import REPO, assert_ok, free_port, run_tool, tool_env

from mmevo.utils.data_check import (
    DataNotFoundError,
    MissingPath,
    check_data,
    describe_missing,
    find_missing_data,
)

MASK_RCNN = osp.join(REPO, 'configs', 'mask_rcnn', 'eatformer_s_3x.py')
UPERNET = osp.join(REPO, 'configs', 'upernet', 'eatformer_s_upernet_8xb4-160k_ade20k-512x512.py')
IMAGENET = osp.join(REPO, 'configs', 'eatformer', 'eatformer-small_8xb128_in1k.py')
TRAIN_VAL = ('train_dataloader', 'val_dataloader')


def make(*paths, base='.'):
    """Create files and folders (ending in /) under ``base``."""
    for path in paths:
        path = osp.join(base, path)
        if path.endswith('/'):
            os.makedirs(path, exist_ok=True)
        else:
            os.makedirs(osp.dirname(path), exist_ok=True)
            open(path, 'w').close()


def summary(missing):
    return [(m.path, m.what, m.key) for m in missing]


def test_coco_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(MASK_RCNN)
    # Without data/coco, the data root alone is named (not every path under it).
    assert summary(find_missing_data(cfg, TRAIN_VAL)) == [
        ('data/coco/', 'data root', 'train_dataloader.dataset.data_root'),
        ('data/coco/', 'data root', 'val_dataloader.dataset.data_root')]
    make('data/coco/annotations/instances_train2017.json', 'data/coco/val2017/')
    assert summary(find_missing_data(cfg, TRAIN_VAL)) == [
        ('data/coco/train2017/', 'img folder', 'train_dataloader.dataset.data_prefix.img'),
        ('data/coco/annotations/instances_val2017.json', 'annotation file',
         'val_dataloader.dataset.ann_file')]
    make('data/coco/train2017/', 'data/coco/annotations/instances_val2017.json')
    assert find_missing_data(cfg, TRAIN_VAL) == []
    assert find_missing_data(cfg, ('test_dataloader',)) == []


def test_ade20k_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(UPERNET)
    make('data/ade/ADEChallengeData2016/images/training/')
    assert summary(find_missing_data(cfg, ('train_dataloader',))) == [
        ('data/ade/ADEChallengeData2016/annotations/training', 'seg_map_path folder',
         'train_dataloader.dataset.data_prefix.seg_map_path')]
    missing = find_missing_data(cfg, ('test_dataloader',))
    assert [m.dataset_name for m in missing] == ['ADE20K', 'ADE20K']


def test_imagenet_split_is_the_image_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(IMAGENET)
    make('data/imagenet/val/')
    assert summary(find_missing_data(cfg, TRAIN_VAL)) == [
        ('data/imagenet/train', 'image folder', 'train_dataloader.dataset.split')]
    make('data/imagenet/train/')
    assert find_missing_data(cfg, TRAIN_VAL) == []


def test_wrappers_and_unchecked_datasets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    voc = dict(type='PascalVOCDataset', data_root=str(tmp_path / 'voc'),
               data_prefix=dict(img_path='JPEGImages', seg_map_path=''),
               ann_file='ImageSets/train.txt')
    cfg = dict(
        train_dataloader=dict(dataset=dict(type='ConcatDataset', datasets=[
            voc, dict(voc, ann_file='ImageSets/aug.txt')])),
        val_dataloader=dict(dataset=dict(type='RepeatDataset', times=2, dataset=dict(
            type='mmdet.CocoDataset', ann_file='ann.json', data_prefix=dict(img='images/')))),
        test_dataloader=dict(dataset=dict(type='ConcatDataset', datasets=[
            dict(type='ToyDataset', size=4),  # in memory: nothing to check
            dict(type='CIFAR10', data_root='data/cifar10', split='train'),  # downloads
            dict(type='CocoDataset', data_root='s3://bucket/coco', ann_file='a.json'),
            dict(type='CocoDataset', data_root='coco', ann_file='a.json',
                 backend_args=dict(backend='petrel')),
        ])))
    make('voc/JPEGImages/', 'voc/ImageSets/train.txt', 'images/')
    assert summary(find_missing_data(cfg, TRAIN_VAL + ('test_dataloader',))) == [
        (str(tmp_path / 'voc' / 'ImageSets/aug.txt'), 'annotation file',
         'train_dataloader.dataset.datasets[1].ann_file'),
        ('ann.json', 'annotation file', 'val_dataloader.dataset.dataset.ann_file')]
    assert find_missing_data(dict(train_dataloader=None), TRAIN_VAL) == []


def test_message():
    coco = MissingPath('data/coco/', 'data root', 'train_dataloader.dataset.data_root',
                       'CocoDataset')
    assert describe_missing([coco], cwd='/work') == (
        'COCO data not found: data root data/coco/ does not exist '
        '(train_dataloader.dataset.data_root of CocoDataset, relative to /work). See '
        '"Prepare datasets" in README.md (COCO) for the expected layout, or set '
        'train_dataloader.dataset.data_root to your copy.')
    ann = MissingPath('/d/x.json', 'annotation file', 'val_dataloader.dataset.ann_file',
                      'mmseg.MyDataset')
    other = MissingPath('/d/img', 'img folder', 'val_dataloader.dataset.data_prefix.img', 'X')
    line = describe_missing([ann, other, ann, other])
    assert line.startswith('mmseg.MyDataset data not found: annotation file /d/x.json does not '
                           'exist (val_dataloader.dataset.ann_file of mmseg.MyDataset). See')
    assert line.endswith(' 1 more missing path.') and '\n' not in line
    demo = MissingPath('data/demo/coco/', 'data root', 'k', 'CocoDataset')
    assert 'python -m mmevo.datasets.demo_data' in describe_missing([demo])
    with pytest.raises(DataNotFoundError, match='^COCO data not found: data root data/coco/'):
        check_data(dict(train_dataloader=dict(dataset=dict(
            type='CocoDataset', data_root='data/coco/', ann_file='a.json'))),
            ('train_dataloader',))


def assert_one_line_error(proc, start):
    out = proc.stdout + proc.stderr
    lines = [line for line in out.splitlines() if line.strip()]
    assert proc.returncode == 1, out[-3000:]
    assert len(lines) == 1 and lines[0].startswith(start), out[-3000:]
    # Neither a model (the Runner logs its environment first) nor a process group was built,
    # no launcher traceback, no pkg_resources deprecation warning.
    for noise in ('Traceback', 'mmengine - INFO', 'ChildFailedError', 'pkg_resources'):
        assert noise not in out


def test_train_without_data(tmp_path):
    proc = run_tool(['train.py', MASK_RCNN], cwd=str(tmp_path))
    assert_one_line_error(proc, 'error: COCO data not found: data root data/coco/ does not exist '
                          f'(train_dataloader.dataset.data_root of CocoDataset, relative to '
                          f'{tmp_path}). See "Prepare datasets" in README.md (COCO)')
    # With the data in place, --check-data says so and exits.
    make('data/coco/annotations/instances_train2017.json', 'data/coco/train2017/',
         'data/coco/annotations/instances_val2017.json', 'data/coco/val2017/', base=tmp_path)
    proc = run_tool(['train.py', MASK_RCNN, '--check-data'], cwd=str(tmp_path))
    assert_ok(proc)
    assert proc.stdout.strip() == 'The data of train_dataloader and val_dataloader is in place.'


def test_test_tool_without_data(tmp_path):
    proc = run_tool(['test.py', UPERNET, 'missing.pth'], cwd=str(tmp_path))
    assert_one_line_error(
        proc, 'error: ADE20K data not found: data root data/ade/ADEChallengeData2016 does not '
        'exist (test_dataloader.dataset.data_root of ADE20KDataset')


def test_dist_train_without_data(tmp_path):
    env = tool_env(dict(PORT=str(free_port())))
    proc = run_tool(['dist_train.sh', MASK_RCNN, '2'], cwd=str(tmp_path), env=env)
    assert_one_line_error(proc, 'error: COCO data not found: data root data/coco/')


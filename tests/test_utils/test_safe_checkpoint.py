# Copyright (c) mmevo contributors. All rights reserved.
"""The checkpoint allow-list, derived from real Runner checkpoints of all three task libraries.

Each task trains a tiny model for two iterations on a few images written to disk (mmpretrain:
``CustomDataset`` + AdamW under ``AmpOptimWrapper``; mmdet: Mask R-CNN on a COCO json; mmseg:
UperNet with SyncBN on an ADE20K-style folder) and saves a full Runner checkpoint: model,
optimizer, parameter schedulers, message hub and, for mmpretrain, the AMP loss scaler.
"""
import io
import json
import os
import os.path as osp
import pickle
import pickletools
import textwrap
import zipfile
from typing import Set

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from mmengine.runner import checkpoint as mmengine_checkpoint

from mmevo.utils import UnsafeCheckpointError, register_safe_checkpoint_loading
from mmevo.utils.checkpoint import (
    history_buffer_getattr,
    load_url_safe,
    mmengine_checkpoint_safe_globals,
)

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')
pytest.importorskip('mmpretrain')

TASKS = ('mmpretrain', 'mmdet', 'mmseg')


def _image(seed: int, size: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)


def _cls_data(root: str) -> None:
    for label in ('cat', 'dog'):
        for i in range(2):
            path = osp.join(root, 'data', label, f'{i}.png')
            os.makedirs(osp.dirname(path), exist_ok=True)
            cv2.imwrite(path, _image(i + 10 * len(label)))


def _det_data(root: str) -> None:
    os.makedirs(osp.join(root, 'imgs'))
    images, anns = [], []
    for i in range(2):
        cv2.imwrite(osp.join(root, 'imgs', f'{i}.jpg'), _image(i))
        images.append(dict(id=i, file_name=f'{i}.jpg', width=64, height=64))
        for j, (x, y) in enumerate(((8, 8), (30, 28))):
            w = h = 24
            anns.append(dict(id=len(anns) + 1, image_id=i, category_id=j + 1, iscrowd=0,
                             bbox=[x, y, w, h], area=w * h,
                             segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]]))
    categories = [dict(id=1, name='square'), dict(id=2, name='block')]
    with open(osp.join(root, 'ann.json'), 'w') as f:
        json.dump(dict(images=images, annotations=anns, categories=categories), f)


def _seg_data(root: str) -> None:
    for sub in ('images/training', 'annotations/training'):
        os.makedirs(osp.join(root, sub))
    for i in range(2):
        cv2.imwrite(osp.join(root, 'images/training', f'{i}.jpg'), _image(i))
        mask = np.ones((64, 64), np.uint8)
        mask[16:48, 16:48] = 2
        mask[:4] = 0  # ignored after reduce_zero_label
        cv2.imwrite(osp.join(root, 'annotations/training', f'{i}.png'), mask)


CONFIGS = dict(
    mmpretrain='''
        _base_ = 'mmpretrain::_base_/default_runtime.py'
        model = dict(
            type='ImageClassifier',
            backbone=dict(type='ResNet', depth=18, stem_channels=8, base_channels=8),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=2, in_channels=64,
                      loss=dict(type='CrossEntropyLoss')))
        train_dataloader = dict(
            batch_size=2, num_workers=0,
            dataset=dict(type='CustomDataset', data_root='{root}/data', pipeline=[
                dict(type='LoadImageFromFile'), dict(type='Resize', scale=(32, 32)),
                dict(type='PackInputs')]),
            sampler=dict(type='DefaultSampler', shuffle=True))
        train_cfg = dict(by_epoch=False, max_iters=2)
        optim_wrapper = dict(type='AmpOptimWrapper', dtype='bfloat16',
                             optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05))
        param_scheduler = [
            dict(type='LinearLR', start_factor=0.1, by_epoch=False, end=1),
            dict(type='CosineAnnealingLR', by_epoch=False, begin=1, T_max=10)]
        default_hooks = dict(checkpoint=dict(by_epoch=False, interval=2))
    ''',
    mmdet='''
        _base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
        model = dict(
            backbone=dict(depth=18, base_channels=8, init_cfg=None),
            neck=dict(in_channels=[8, 16, 32, 64], out_channels=16),
            rpn_head=dict(in_channels=16, feat_channels=16),
            roi_head=dict(
                bbox_roi_extractor=dict(out_channels=16),
                bbox_head=dict(in_channels=16, fc_out_channels=32, num_classes=2),
                mask_roi_extractor=dict(out_channels=16),
                mask_head=dict(in_channels=16, conv_out_channels=16, num_classes=2)))
        train_dataloader = dict(
            batch_size=2, num_workers=0, persistent_workers=False,
            dataset=dict(
                data_root='{root}/', ann_file='ann.json', data_prefix=dict(img='imgs/'),
                metainfo=dict(classes=('square', 'block')),
                pipeline=[
                    dict(type='LoadImageFromFile'),
                    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
                    dict(type='Resize', scale=(64, 64), keep_ratio=True),
                    dict(type='PackDetInputs')]))
        train_cfg = dict(max_epochs=2, val_interval=100)
        val_cfg = None
        val_dataloader = None
        val_evaluator = None
        test_cfg = None
        test_dataloader = None
        test_evaluator = None
    ''',
    mmseg='''
        _base_ = 'mmseg::upernet/upernet_r50_4xb4-80k_ade20k-512x512.py'
        crop_size = (64, 64)
        model = dict(
            data_preprocessor=dict(size=crop_size),
            pretrained=None,
            backbone=dict(depth=18, stem_channels=8, base_channels=8),
            decode_head=dict(in_channels=[8, 16, 32, 64], channels=16),
            auxiliary_head=dict(in_channels=32, channels=8))
        train_dataloader = dict(
            batch_size=2, num_workers=0, persistent_workers=False,
            dataset=dict(
                data_root='{root}',
                pipeline=[
                    dict(type='LoadImageFromFile'),
                    dict(type='LoadAnnotations', reduce_zero_label=True),
                    dict(type='Resize', scale=crop_size, keep_ratio=False),
                    dict(type='PackSegInputs')]))
        train_cfg = dict(max_iters=2, val_interval=100)
        default_hooks = dict(checkpoint=dict(interval=2))
        val_cfg = None
        val_dataloader = None
        val_evaluator = None
        test_cfg = None
        test_dataloader = None
        test_evaluator = None
    ''',
)
MAKE_DATA = dict(mmpretrain=_cls_data, mmdet=_det_data, mmseg=_seg_data)


@pytest.fixture(scope='module')
def cpu_amp():
    """Let MMEngine's AmpOptimWrapper run on the CPU (bf16 autocast, CPU GradScaler)."""
    from mmengine.optim.optimizer import amp_optimizer_wrapper as amp
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(amp, 'is_cuda_available', lambda: True)
        mp.setattr(amp, 'GradScaler', lambda **kw: torch.amp.GradScaler('cpu', **kw))
        yield


def _build_cfg(task: str, root: str, name: str) -> Config:
    path = osp.join(root, f'{task}_toy.py')
    with open(path, 'w') as f:
        f.write(textwrap.dedent(CONFIGS[task]).format(root=root))
    cfg = Config.fromfile(path)
    cfg.work_dir = osp.join(root, 'work_dir')
    cfg.experiment_name = name  # unique: Runners of one process share loggers by name
    cfg.randomness = dict(seed=0)
    return cfg


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory, cpu_amp) -> dict:
    ckpts = {}
    for task in TASKS:
        root = str(tmp_path_factory.mktemp(task))
        MAKE_DATA[task](root)
        cfg = _build_cfg(task, root, f'{task}_train')
        Runner.from_cfg(cfg).train()
        with open(osp.join(cfg.work_dir, 'last_checkpoint')) as f:
            ckpts[task] = (root, f.read().strip())
    return ckpts


def _globals_in(path: str) -> Set[str]:
    """Every global a torch zip checkpoint's pickle references (``module.name``)."""
    with zipfile.ZipFile(path) as zf:
        data = zf.read(next(n for n in zf.namelist() if n.endswith('data.pkl')))
    found, strings = set(), []
    for op, arg, _ in pickletools.genops(io.BytesIO(data)):
        if op.name == 'GLOBAL':
            found.add(arg.replace(' ', '.'))
        elif op.name == 'STACK_GLOBAL':
            found.add('.'.join(strings[-2:]))
        elif isinstance(arg, str):
            strings.append(arg)
    return found


def _torch_default_globals() -> Set[str]:
    from torch import _weights_only_unpickler as wo
    return set(wo._get_allowed_globals())


def _mmevo_names() -> Set[str]:
    names = set()
    for entry in mmengine_checkpoint_safe_globals():
        if isinstance(entry, tuple):
            names.add(entry[1])
        else:
            names.add(f'{entry.__module__}.{entry.__qualname__}')
    return names


@pytest.mark.parametrize('task', TASKS)
def test_allow_list_covers_real_checkpoints(checkpoints, task):
    root, path = checkpoints[task]
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    assert {'meta', 'state_dict', 'message_hub', 'optimizer', 'param_schedulers'} <= set(ckpt)
    if task == 'mmpretrain':
        assert ckpt['optimizer']['loss_scaler']['scale'] > 0  # the AMP loss scaler's state
    found = {'builtins.getattr' if g == '__builtin__.getattr' else g for g in _globals_in(path)}
    beyond_torch = found - _torch_default_globals()
    assert beyond_torch <= _mmevo_names(), beyond_torch - _mmevo_names()
    # What mmevo adds is what these checkpoints need (the dtype classes are built, not named).
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in beyond_torch
    assert 'builtins.getattr' in beyond_torch


@pytest.mark.parametrize('task', TASKS)
def test_resume_real_checkpoint(checkpoints, task):
    root, path = checkpoints[task]
    saved = torch.load(path, map_location='cpu', weights_only=True)
    runner = Runner.from_cfg(_build_cfg(task, root, f'{task}_resume'))
    runner.resume(path)
    assert runner.iter == saved['meta']['iter'] > 0
    for name, value in runner.model.state_dict().items():
        torch.testing.assert_close(value, saved['state_dict'][name], rtol=0, atol=0)
    assert runner.message_hub.get_scalar('train/loss').current() == pytest.approx(
        saved['message_hub']['log_scalars']['train/loss'].current())
    if task == 'mmpretrain':
        assert runner.optim_wrapper.loss_scaler.get_scale() == pytest.approx(
            saved['optimizer']['loss_scaler']['scale'])


class _Payload:
    """Unpickling this runs ``touch <marker>`` (writing it runs nothing)."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


def _evil(tmp_path) -> str:
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(state_dict={}, meta=_Payload(str(tmp_path / 'ran'))), path)
    return path


def test_refuses_code_in_local_checkpoint(tmp_path):
    path = _evil(tmp_path)
    with pytest.raises(UnsafeCheckpointError, match='posix.system'):
        mmengine_checkpoint._load_checkpoint(path)
    assert not (tmp_path / 'ran').exists()


def test_refuses_code_in_downloaded_checkpoint(tmp_path):
    """URLs go through ``weights_only=True`` too (torch.hub's default is False)."""
    assert mmengine_checkpoint.load_url is load_url_safe
    path = _evil(tmp_path)
    url = 'file://' + path
    with pytest.raises(UnsafeCheckpointError, match='posix.system'):
        mmengine_checkpoint.load_from_http(url, model_dir=str(tmp_path / 'hub'))
    assert not (tmp_path / 'ran').exists()
    good = tmp_path / 'good.pth'
    torch.save(dict(state_dict=dict(w=torch.ones(2))), good)
    loaded = mmengine_checkpoint.load_from_http('file://' + str(good),
                                                model_dir=str(tmp_path / 'hub'))
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))


def test_getattr_stand_in_only_reaches_history_buffer_methods(tmp_path):
    from mmengine.logging import HistoryBuffer
    assert history_buffer_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean
    for obj, name in ((HistoryBuffer, '__init__'), (HistoryBuffer, '__subclasses__'),
                      (np.ndarray, 'min'), (object, '__subclasses__')):
        with pytest.raises(pickle.UnpicklingError):
            history_buffer_getattr(obj, name)
    # A checkpoint that uses getattr to climb towards os.system is refused.
    path = str(tmp_path / 'climb.pth')
    torch.save({'x': _GetattrClimb()}, path)
    with pytest.raises(UnsafeCheckpointError, match='getattr'):
        mmengine_checkpoint._load_checkpoint(path)


class _GetattrClimb:
    """Pickles as ``getattr(HistoryBuffer, '__subclasses__')``, a first step out of the box."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return (getattr, (HistoryBuffer, '__subclasses__'))


def test_registration_is_idempotent():
    before = len(torch.serialization.get_safe_globals())
    register_safe_checkpoint_loading()
    assert len(torch.serialization.get_safe_globals()) == before

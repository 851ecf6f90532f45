# Copyright (c) mmevo contributors. All rights reserved.
"""Every config under configs/ parses, builds and trains one step; published model sizes.

Configs are found by walking ``configs/`` (``_base_`` folders skipped), so new ones are covered
without touching this file. mmevo backbones are shrunk to a narrow custom arch of the same kind
(same ops, windows and modes: their entry in ``mmevo.testing.zoo``, so a new family needs no code
here) and the first neck/head in_channels adapted; SyncBN becomes BN; pretrained init is
dropped.
"""
import copy
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config, ConfigDict

import mmevo  # noqa: F401  (registers the mmevo:: config prefix)
from mmevo.testing.zoo import shrink_backbone_cfg

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = osp.join(ROOT, 'configs')


def _all_configs():
    found = []
    for dirpath, dirnames, filenames in os.walk(CONFIG_DIR):
        dirnames[:] = sorted(d for d in dirnames if d != '_base_')
        found += [osp.join(dirpath, f) for f in sorted(filenames) if f.endswith('.py')]
    return found


CONFIGS = _all_configs()
CONFIG_IDS = [osp.relpath(p, CONFIG_DIR) for p in CONFIGS]


def _build(scope: str, model_cfg: ConfigDict):
    """Build a model with the MODELS registry of a task library, under its default scope."""
    from mmengine.registry import DefaultScope
    if scope == 'mmdet':
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
    elif scope == 'mmseg':
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
    elif scope == 'mmpretrain':
        from mmpretrain.registry import MODELS
        from mmpretrain.utils import register_all_modules
    else:
        raise AssertionError(f'config with unexpected default_scope {scope!r}')
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope(scope):
        return MODELS.build(model_cfg)


def _replace_syncbn(obj):
    """SyncBN -> BN everywhere in a config (SyncBN needs a process group)."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == 'type' and value == 'SyncBN':
                obj[key] = 'BN'
            else:
                _replace_syncbn(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _replace_syncbn(value)


def _narrow_two_stage(model: ConfigDict, width: int) -> None:
    """Narrow an FPN two-stage detector (Mask R-CNN, Cascade Mask R-CNN) and sample fewer
    RoIs.

    The one step checks the wiring; 256-channel heads on 512 RoIs spend ~15 s in mmcv's CPU
    RoIAlign backward alone.
    """
    model.neck.out_channels = width
    if model.get('rpn_head'):
        model.rpn_head.in_channels = width
        model.rpn_head.feat_channels = width
    roi = model.roi_head
    for name in ('bbox_roi_extractor', 'mask_roi_extractor'):
        if roi.get(name):
            roi[name].out_channels = width
    bbox_heads = roi.get('bbox_head') or []
    for head in bbox_heads if isinstance(bbox_heads, list) else [bbox_heads]:
        head.in_channels = width
        if 'fc_out_channels' in head:
            head.fc_out_channels = 2 * width
        if 'conv_out_channels' in head:
            head.conv_out_channels = width
    if roi.get('mask_head'):
        roi.mask_head.in_channels = width
        roi.mask_head.conv_out_channels = width
    rcnn = model.get('train_cfg', {}).get('rcnn') or []
    for stage in rcnn if isinstance(rcnn, list) else [rcnn]:
        if stage.get('sampler'):
            stage.sampler.num = 64


def _shrink(model: ConfigDict) -> None:
    """Narrow the mmevo backbone (its zoo entry's narrowed arch of the same kind) and adapt the
    first neck / head to its output channels; SyncBN -> BN; no pretrained weights."""
    dims = shrink_backbone_cfg(model.backbone)
    if model.get('neck') and 'in_channels' in model.neck:
        if isinstance(model.neck.in_channels, (list, tuple)):
            model.neck.in_channels = dims
        else:
            model.neck.in_channels = dims[-1]
    if model.get('neck') and model.neck.get('type') == 'SSDNeck':
        # SSD's neck passes the backbone maps on: its first out_channels are its inputs
        model.neck.out_channels = list(dims) + list(model.neck.out_channels[len(dims):])
        model.bbox_head.in_channels = model.neck.out_channels
    for name in ('decode_head', 'auxiliary_head'):
        heads = model.get(name)
        for head in (heads if isinstance(heads, list) else [heads] if heads else []):
            index = head.get('in_index', -1)
            if isinstance(index, (list, tuple)):
                head.in_channels = [dims[i] for i in index]
            else:
                head.in_channels = dims[index]
            # narrow heads: the one step checks wiring, not capacity (UperNet's 512 channels
            # at the 512x512 crop take ~1 min on 2 cores)
            if 'channels' in head:
                head.channels = 16
    preprocessor = model.get('data_preprocessor')
    if preprocessor is not None and preprocessor.get('size') is not None:
        preprocessor.size = None  # no padding of the tiny inputs to the training crop
        preprocessor.size_divisor = 32
    if model.get('roi_head') and model.get('neck', {}).get('out_channels'):
        _narrow_two_stage(model, 32)
    neck_type = model.neck.get('type') if model.get('neck') else None
    if model.get('head') and neck_type in (None, 'GlobalAveragePooling'):
        model.head.in_channels = dims[-1]
    model.pop('pretrained', None)


def _load(path: str) -> Config:
    cfg = Config.fromfile(path)
    assert cfg.get('default_scope') in ('mmdet', 'mmseg', 'mmpretrain'), path
    assert 'model' in cfg
    return cfg


def _model_cfg(cfg: Config) -> ConfigDict:
    model = copy.deepcopy(cfg.model)
    # The Runner merges a top-level data_preprocessor into the model (mmpretrain style).
    if cfg.get('data_preprocessor') is not None:
        model.setdefault('data_preprocessor', copy.deepcopy(cfg.data_preprocessor))
    _replace_syncbn(model)
    return model


def _inputs(scope: str, num_classes: int):
    """A tiny packed batch of two samples (96x128 and 128x96) for ``scope``."""
    torch.manual_seed(0)
    shapes = [(3, 96, 128), (3, 128, 96)]
    if scope == 'mmdet':
        from mmdet.testing import demo_mm_inputs
        return demo_mm_inputs(
            2, [list(s) for s in shapes], num_classes=num_classes, with_mask=True)
    if scope == 'mmseg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        inputs, samples = [], []
        for c, h, w in shapes:
            inputs.append(torch.randint(0, 256, (c, h, w), dtype=torch.uint8))
            sample = SegDataSample()
            sample.gt_sem_seg = PixelData(
                data=torch.randint(0, num_classes, (1, h, w), dtype=torch.long))
            sample.set_metainfo(dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
            samples.append(sample)
        return dict(inputs=inputs, data_samples=samples)
    from mmpretrain.structures import DataSample
    inputs = [torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8) for _ in range(2)]
    samples = [DataSample().set_gt_label(i % num_classes) for i in range(2)]
    return dict(inputs=inputs, data_samples=samples)


def _num_classes(model: ConfigDict, scope: str) -> int:
    if scope == 'mmdet':
        # a list for Cascade R-CNN; single-stage detectors have no roi_head
        head = model.roi_head.bbox_head if model.get('roi_head') else model.bbox_head
        return (head[0] if isinstance(head, list) else head).num_classes
    if scope == 'mmseg':
        return model.decode_head.num_classes
    return model.head.num_classes


@pytest.mark.parametrize('path', CONFIGS, ids=CONFIG_IDS)
def test_config_builds_and_trains_one_step(path):
    cfg = _load(path)
    scope = cfg.default_scope
    model_cfg = _model_cfg(cfg)
    _shrink(model_cfg)
    model = _build(scope, model_cfg)
    model.init_weights()
    model.train()
    data = model.data_preprocessor(_inputs(scope, _num_classes(model_cfg, scope)), True)
    losses = model(**data, mode='loss')
    loss, log_vars = model.parse_losses(losses)
    assert torch.isfinite(loss), log_vars
    loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if n.startswith('backbone.')]
    assert any(g is not None and g.abs().sum() > 0 for g in grads), 'no gradient in backbone'


def test_every_config_folder_is_covered():
    folders = {osp.dirname(osp.relpath(p, CONFIG_DIR)) for p in CONFIGS}
    assert {'mask_rcnn', 'upernet', 'demo'} <= folders
    names = [osp.basename(p) for p in CONFIGS]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f'config basenames must be unique (mim searches by name): {duplicates}'


# Published sizes (EATFormer README): Mask R-CNN 25M / 44M / 68M, UperNet 34M / 53M / 79M.
# The README truncates (measured: 25.93 / 44.02 / 68.73 and 34.28 / 53.93 / 79.22).
PUBLISHED_SIZES = [
    ('mask_rcnn/eatformer_t_1x.py', 25),
    ('mask_rcnn/eatformer_s_1x.py', 44),
    ('mask_rcnn/eatformer_b_1x.py', 68),
    ('mask_rcnn/eatformer_t_3x.py', 25),
    ('mask_rcnn/eatformer_s_3x.py', 44),
    ('mask_rcnn/eatformer_b_3x.py', 68),
    ('upernet/eatformer_t_upernet_8xb4-160k_ade20k-512x512.py', 34),
    ('upernet/eatformer_s_upernet_8xb4-160k_ade20k-512x512.py', 53),
    ('upernet/eatformer_b_upernet_8xb4-160k_ade20k-512x512.py', 79),
]


# Published sizes (DWNet README): Cascade Mask R-CNN (4conv1fc GIoU heads) 82M / 132M and dynamic
# 108M / 219M; UperNet 56M / 108M and dynamic 83M / 195M (measured: 81.52 / 131.55, 108.47 /
# 218.81, 55.83 / 107.85, 82.78 / 195.11).
PUBLISHED_SIZES += [
    ('cascade_mask_rcnn/dwnet_t_3x.py', 82),
    ('cascade_mask_rcnn/dwnet_b_3x.py', 132),
    ('cascade_mask_rcnn/dwnet_dynamic_t_3x.py', 108),
    ('cascade_mask_rcnn/dwnet_dynamic_b_3x.py', 219),
    ('upernet/dwnet_t_upernet_8xb2-160k_ade20k-512x512.py', 56),
    ('upernet/dwnet_b_upernet_8xb2-160k_ade20k-512x512.py', 108),
    ('upernet/dwnet_dynamic_t_upernet_8xb2-160k_ade20k-512x512.py', 83),
    ('upernet/dwnet_dynamic_b_upernet_8xb2-160k_ade20k-512x512.py', 195),
]


@pytest.mark.parametrize('path,millions', PUBLISHED_SIZES, ids=[p for p, _ in PUBLISHED_SIZES])
def test_published_model_size(path, millions):
    cfg = _load(osp.join(CONFIG_DIR, path))
    model_cfg = _model_cfg(cfg)
    model_cfg.backbone.init_cfg = None
    model = _build(cfg.default_scope, model_cfg)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(params - millions) < 1.0, f'{path}: {params:.2f}M, published {millions}M'

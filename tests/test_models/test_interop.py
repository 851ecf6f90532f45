# Copyright (c) mmevo contributors. All rights reserved.
"""Where mmevo's maps meet third-party ops (issue: channels-last maps broke Mask R-CNN).

Audit (mmcv 2.1.0, CPU): mmcv's ``roi_align`` and ``modulated_deform_conv2d`` read their input as
raw NCHW memory and give wrong values on a channels-last map; ``deform_conv2d`` refuses it
("input must be contiguous"); ``MultiScaleDeformableAttention`` gives wrong values on a
channels-last value map; ``point_sample`` (``F.grid_sample``) is layout-safe; ``CARAFE`` and
``roi_pool`` have CUDA kernels only (their forward does not make the input contiguous either).
mmdet's FPN keeps the memory format of its inputs, so whatever layout the backbone returns
reaches the RoI extractors. mmevo backbones therefore return contiguous NCHW maps (channels-last
only with ``out_channels_last=True``), and mmevo's own calls into mmcv make their inputs
contiguous. Each boundary is checked below on real backbone outputs.
"""
import copy
import os.path as osp

import pytest
import torch

import mmevo  # noqa: F401
from mmevo.models import EATFormer
from mmevo.models.layers import deform_conv2d, modulated_deform_sample, plain_ops
from mmevo.testing.zoo import ZOO, shrink_backbone_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'demo', 'demo_mask_rcnn_eatformer_mobile.py')


@pytest.fixture(scope='module')
def maps():
    """Default outputs of an EATFormer (channels-last inside) and the FPN on them."""
    from mmdet.models.necks import FPN
    torch.manual_seed(0)
    backbone = EATFormer(ZOO['EATFormer'].tiny('tiny'), out_indices=(0, 1, 2, 3)).eval()
    assert backbone.channels_last  # the fast internal layout is on
    neck = FPN(list(backbone.out_channels), 16, 4).eval()
    with torch.no_grad():
        feats = backbone(torch.randn(2, 3, 96, 128))
        fpn = neck(feats)
    return feats, fpn


def _nchw(tensors):
    return [t.clone(memory_format=torch.contiguous_format) for t in tensors]


def test_maps_reaching_the_neck_and_heads_are_nchw(maps):
    feats, fpn = maps
    assert all(t.is_contiguous() for t in feats)
    assert all(t.is_contiguous() for t in fpn), 'mmdet FPN keeps its input layout'


def test_roi_align_on_backbone_and_fpn_outputs(maps):
    from mmcv.ops import roi_align
    rois = torch.tensor([[0, 4., 8., 60., 50.], [1, 20., 2., 90., 70.], [0, 0., 0., 127., 95.]])
    for level in (*maps[0], *maps[1]):
        scale = level.shape[-1] / 128
        got = roi_align(level, rois, (7, 7), scale, 2)
        ref = roi_align(_nchw([level])[0], rois, (7, 7), scale, 2)
        assert torch.equal(got, ref)


def test_mmdet_roi_extractor_on_fpn_outputs(maps):
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    extractor = SingleRoIExtractor(dict(type='RoIAlign', output_size=7, sampling_ratio=2), 16,
                                   [4, 8, 16, 32])
    rois = torch.tensor([[0, 4., 8., 60., 50.], [1, 20., 2., 90., 70.], [0, 0., 0., 127., 95.]])
    fpn = maps[1]
    assert torch.equal(extractor(fpn, rois), extractor(tuple(_nchw(fpn)), rois))


@pytest.mark.parametrize('modulated', [False, True])
def test_mmcv_deformable_convs_on_backbone_outputs(maps, modulated):
    from mmcv.ops import DeformConv2dPack, ModulatedDeformConv2dPack
    torch.manual_seed(0)
    feat = maps[0][1]
    pack = ModulatedDeformConv2dPack if modulated else DeformConv2dPack
    layer = pack(feat.shape[1], 8, 3, padding=1).eval()
    with torch.no_grad():
        layer.conv_offset.weight.normal_(0, 0.1)
        assert torch.equal(layer(feat), layer(_nchw([feat])[0]))


def test_point_sample_and_msda_on_backbone_outputs(maps):
    from mmcv.ops import MultiScaleDeformableAttention, point_sample
    feats = maps[0][:2]
    points = torch.rand(2, 30, 2)
    for feat in feats:
        assert torch.equal(point_sample(feat, points), point_sample(_nchw([feat])[0], points))
    dims = feats[0].shape[1]
    msda = MultiScaleDeformableAttention(dims, num_heads=2, num_levels=1, num_points=2,
                                         batch_first=True).eval()
    query, ref = torch.randn(2, 10, dims), torch.rand(2, 10, 1, 2)
    shapes, start = torch.tensor([list(feats[0].shape[-2:])]), torch.tensor([0])

    def run(feat):
        return msda(query, value=feat.flatten(2).transpose(1, 2), reference_points=ref,
                    spatial_shapes=shapes, level_start_index=start)

    with torch.no_grad():
        assert torch.equal(run(feats[0]), run(_nchw(feats[:1])[0]))


def test_mmevo_calls_into_mmcv_are_layout_safe():
    """mmevo's own mmcv calls (MD-MSA's sampler='mmcv', the 'dcn' op) give the same result on a
    channels-last map as on an NCHW one."""
    torch.manual_seed(0)
    x = torch.randn(2, 8, 9, 11)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    grid = torch.rand(4, 9, 11, 2) * 2 - 1
    mask = torch.rand(4, 1, 9, 11)
    ref = modulated_deform_sample(x, grid, mask, 2, 'grid_sample')
    for inp in (x, x_cl):
        torch.testing.assert_close(modulated_deform_sample(inp, grid, mask, 2, 'mmcv'), ref)
    weight = torch.randn(8, 8, 3, 3)
    offset = torch.randn(2, 2 * 2 * 9, 9, 11).contiguous(memory_format=torch.channels_last)
    expected = deform_conv2d(x, offset.contiguous(), None, weight, 1, 2, impl='torchvision')
    for inp in (x, x_cl):
        torch.testing.assert_close(deform_conv2d(inp, offset, None, weight, 1, 2, impl='mmcv'),
                                   expected, atol=1e-4, rtol=1e-4)


def _detector(channels_last: bool):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(CONFIG)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.neck.in_channels = shrink_backbone_cfg(model_cfg.backbone)
    model_cfg.backbone.channels_last = channels_last
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def test_mask_rcnn_fast_path_equals_plain_path():
    """Losses and gradients of the demo Mask R-CNN: the backbone's fast path (channels-last
    maps, fused and lean routes) equals its plain path (NCHW, plain ops), same weights/data."""
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    fast = _detector(channels_last=True).train()
    plain = _detector(channels_last=False).train()
    plain.load_state_dict(fast.state_dict())
    packed = demo_mm_inputs(2, [[3, 96, 128], [3, 128, 96]], num_classes=4, with_mask=True)
    results = []
    for model, use_plain in ((fast, False), (plain, True)):
        data = model.data_preprocessor(copy.deepcopy(packed), True)
        torch.manual_seed(1)  # the same RPN / RoI sampling in both runs
        with plain_ops() if use_plain else torch.enable_grad():
            losses = model(**data, mode='loss')
            loss, log_vars = model.parse_losses(losses)
            loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((log_vars, grads))
    (vars_fast, grads_fast), (vars_plain, grads_plain) = results
    for key in vars_fast:
        assert float(vars_fast[key]) == pytest.approx(float(vars_plain[key]), rel=1e-4,
                                                      abs=1e-5), key
    assert grads_fast.keys() == grads_plain.keys()
    assert any(k.startswith('backbone.') for k in grads_fast)
    for name in grads_fast:
        # float32 sums in another order through a whole detector: ~1e-3 of a tensor's scale
        # (a layout bug is O(1); gradients that are mathematically zero are float noise)
        diff = (grads_fast[name] - grads_plain[name]).abs().max().item()
        assert diff <= 5e-3 * grads_plain[name].abs().max().item() + 1e-6, (name, diff)

# Copyright (c) mmevo contributors. All rights reserved.
"""EATFormer with converted official weights reproduces the official outputs (../shared/parity)."""
import pytest
import torch
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm

from mmevo.models import EATFormer, EATFormerClsHead
from mmevo.models.layers import mmcv_ops_available
from mmevo.testing import (ClassifierUnderTest, as_reference, assert_parity,
                           load_parity_fixture)
from mmevo.utils.converters import convert_eatformer, official_kwargs_to_mmevo

CLS_CASES = ['eatformer_mobile', 'eatformer_mdmsa_small', 'eatformer_msa_small',
             'eatformer_trhead_small', 'eatformer_dcn_ratio_small']


def build_port(fixture: dict, **backbone_overrides) -> ClassifierUnderTest:
    official = fixture['official']
    cfg = official_kwargs_to_mmevo(official.get('resolved_kwargs') or official['kwargs'])
    backbone_cfg = dict(cfg['backbone'], out_indices=(0, 1, 2, 3))
    backbone_cfg.update(backbone_overrides)
    head = EATFormerClsHead(**cfg['head']) if cfg['head'] else None
    model = ClassifierUnderTest(EATFormer(**backbone_cfg), head)
    result = model.load_state_dict(convert_eatformer(fixture['state_dict']), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return model.eval()


@pytest.fixture(scope='module', params=CLS_CASES + ['eatformer_det_small'])
def fixture(request):
    return load_parity_fixture(request.param)


def test_parity(fixture):
    model = build_port(fixture)
    assert sum(p.numel() for p in model.parameters()) == fixture['num_params']
    worst = assert_parity(fixture, model, stage_fn=model.backbone)
    assert worst['outputs'] <= fixture['atol'] + fixture['rtol'] * 10


@pytest.mark.skipif(not mmcv_ops_available(), reason='needs mmcv with compiled ops')
@pytest.mark.parametrize('case', ['eatformer_mdmsa_small', 'eatformer_det_small'])
def test_parity_mmcv_sampler(case):
    fx = load_parity_fixture(case)
    model = build_port(fx, sampler='mmcv')
    assert_parity(fx, model, stage_fn=model.backbone)


@pytest.mark.parametrize('impl', ['torchvision'] + (['mmcv'] if mmcv_ops_available() else []))
def test_parity_dcn_impls(impl):
    """Official DCNv1 weights give the official outputs on both deformable-conv back-ends."""
    fx = load_parity_fixture('eatformer_dcn_ratio_small')
    model = build_port(fx, dcn_impl=impl)
    assert_parity(fx, model, stage_fn=model.backbone)


def test_parity_detects_wrong_weights():
    """The comparison is sensitive: one perturbed tensor breaks parity."""
    fx = load_parity_fixture('eatformer_mdmsa_small')
    model = build_port(fx)
    with torch.no_grad():
        model.backbone.stages[2][1].gli.ops[0].offset.dwconv.bias.mul_(1.1)
    with pytest.raises(AssertionError):
        assert_parity(fx, model)


def test_parity_fused(fixture):
    """Inference folding (BN, layer scales, op weights into convolutions) stays exact."""
    model = build_port(fixture)
    bn_before = sum(isinstance(m, _BatchNorm) for m in model.modules())
    model.backbone.fuse()
    if model.head is not None:
        model.head.fuse()
    bn_after = sum(isinstance(m, _BatchNorm) for m in model.modules())
    assert bn_after < bn_before * 0.6
    assert_parity(fixture, model, stage_fn=model.backbone)


def test_reference_formulation_parity(fixture):
    """The benchmark baseline (``benchmark.py --reference``: explicit attention, padded window
    copies, stacked branches) reproduces the official outputs too, so ratios against it compare
    the same model."""
    model = build_port(fixture)
    model.backbone = as_reference(model.backbone)
    assert_parity(fixture, model, stage_fn=model.backbone)


def test_reference_of_an_unknown_backbone():
    with pytest.raises(TypeError, match='no reference formulation of Linear'):
        as_reference(torch.nn.Linear(2, 2))

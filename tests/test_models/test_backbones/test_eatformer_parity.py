# Copyright (c) mmevo contributors. All rights reserved.
"""EATFormer-specific parity: its other code paths (mmcv sampler, both DCN back-ends, inference
folding, the reference formulation) reproduce the official fixtures too. The parity of the
default path is in tests/test_models/test_parity.py."""
import pytest
import torch
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm

from mmevo.models.layers import mmcv_ops_available
from mmevo.testing import ClassifierUnderTest, as_reference, assert_parity, load_parity_fixture
from mmevo.utils.converters import get_converter

CLS_CASES = ['eatformer_mobile', 'eatformer_mdmsa_small', 'eatformer_msa_small',
             'eatformer_trhead_small', 'eatformer_dcn_ratio_small']


def build_port(fixture: dict, **backbone_overrides) -> ClassifierUnderTest:
    """The port with converted weights, every stage out, ``backbone_overrides`` applied."""
    conv = get_converter('eatformer')
    model = conv.build_official(fixture['official'], out_indices=(0, 1, 2, 3),
                                **backbone_overrides)
    model.load_state_dict(conv.convert(fixture['state_dict']), strict=True)
    return model.eval()


@pytest.fixture(scope='module', params=CLS_CASES + ['eatformer_det_small'])
def fixture(request):
    return load_parity_fixture(request.param)


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

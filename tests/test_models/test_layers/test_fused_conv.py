# Copyright (c) mmevo contributors. All rights reserved.
"""Inference convolutions with folded BatchNorm and oneDNN post-ops equal the plain ops."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmevo.models import EATFormer
from mmevo.models.backbones.eatformer.interleave import interleave_add
from mmevo.models.layers.fast_path import ONEDNN_POINTWISE, fused_inference
from mmevo.models.layers.inference_conv import bn_conv_act, conv_bn_act

CL = torch.channels_last


def _bn(channels: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(channels, eps=1e-6)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
    return bn.eval()


def test_fused_inference_only_without_autograd():
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        assert fused_inference(x) is ONEDNN_POINTWISE
        assert not fused_inference(x.double())
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not fused_inference(x)
    assert not fused_inference(x)


@pytest.mark.skipif(not ONEDNN_POINTWISE, reason='this torch build has no oneDNN conv fusion')
def test_fused_path_runs_onednn_kernels():
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=CL)
    with torch.no_grad(), torch.profiler.profile() as prof:
        conv_bn_act(x, conv, _bn(8), 'silu')
    names = {e.name for e in prof.events()}
    assert 'mkldnn::_convolution_pointwise' in names and 'aten::silu' not in names


CONVS = [
    lambda: nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8),  # MSRA branch
    lambda: nn.Conv2d(8, 8, 5, padding=2, groups=8),  # GLI conv op / MD-MSA offsets
    lambda: nn.Conv2d(8, 16, 1),  # FFN fc1
    lambda: nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),  # MSRA downsampling
]


@pytest.mark.parametrize('make_conv', CONVS)
@pytest.mark.parametrize('act', [None, 'silu', 'gelu'])
@pytest.mark.parametrize('with_norm', [False, True])
def test_conv_bn_act_equals_the_plain_ops(make_conv, act, with_norm):
    torch.manual_seed(0)
    conv = make_conv().to(memory_format=CL)
    norm = _bn(conv.out_channels) if with_norm else None
    x = torch.randn(2, 8, 9, 10).contiguous(memory_format=CL)
    ref = conv(x)
    if norm is not None:
        ref = norm(ref)
    if act is not None:
        ref = {'silu': F.silu, 'gelu': F.gelu}[act](ref)
    with torch.no_grad():
        out = conv_bn_act(x, conv, norm, act)
    torch.testing.assert_close(out, ref.detach(), rtol=1e-5, atol=1e-5)


def test_conv_bn_act_scale_and_residual():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 8, 1).to(memory_format=CL)
    x = torch.randn(2, 16, 7, 7).contiguous(memory_format=CL)
    res = torch.randn(2, 8, 7, 7).contiguous(memory_format=CL)
    scale = torch.rand(8)
    norm = _bn(8)
    ref = res + norm(conv(x)) * scale.view(-1, 1, 1)
    with torch.no_grad():
        out = conv_bn_act(x, conv, norm, scale=scale, residual=res)
    torch.testing.assert_close(out, ref.detach(), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match='act must be one of'):
        conv_bn_act(x, conv, act='tanh')
    with pytest.raises(ValueError, match='only without an activation'):
        conv_bn_act(x, conv, act='gelu', residual=res)


def test_bn_conv_act_folds_the_pre_norm():
    torch.manual_seed(0)
    norm, conv = _bn(8), nn.Conv2d(8, 32, 1).to(memory_format=CL)
    x = torch.randn(2, 8, 6, 5).contiguous(memory_format=CL)
    ref = F.gelu(conv(norm(x)))
    with torch.no_grad():
        out = bn_conv_act(x, norm, conv, 'gelu')
    torch.testing.assert_close(out, ref.detach(), rtol=1e-5, atol=1e-5)
    # a training-mode BatchNorm uses batch statistics: never folded
    norm.train()
    with torch.no_grad():
        torch.testing.assert_close(bn_conv_act(x, norm, conv, 'gelu'),
                                   F.gelu(conv(F.batch_norm(x, None, None, norm.weight,
                                                            norm.bias, True, 0., 1e-6))))


def test_interleave_add():
    x = torch.randn(2, 6, 4, 5).contiguous(memory_format=CL)
    ys = [torch.randn(2, 3, 4, 5).contiguous(memory_format=CL) for _ in range(2)]
    out = interleave_add(x, ys)
    torch.testing.assert_close(out, x + torch.stack(ys, 2).flatten(1, 2))
    assert out.is_contiguous(memory_format=CL)


@pytest.mark.parametrize('ops', [['mdmsa', 'conv'], ['msa', 'conv'], ['dcn', 'conv']])
def test_eatformer_inference_path_equals_the_autograd_path(ops):
    """``torch.no_grad()`` (fused kernels) and autograd-enabled eval forwards agree."""
    torch.manual_seed(0)
    arch = dict(depths=[1, 1, 2, 1], embed_dims=[16, 16, 24, 32], dim_heads=[8, 8, 4, 8],
                op_names=[['conv'], ['conv'], ops, ops], window_sizes=[7, 7, 3, 2])
    model = EATFormer(arch, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():  # layer scales and op weights far from their tiny initial values
        for name, p in model.named_parameters():
            if 'gamma' in name or 'alphas' in name:
                p.normal_(0.5, 0.2)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 64, 96)
    ref = model(x)
    with torch.no_grad():
        outs = model(x)
    for out, r in zip(outs, ref):
        torch.testing.assert_close(out, r.detach(), rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not ONEDNN_POINTWISE, reason='this torch build has no oneDNN conv fusion')
def test_single_op_gli_adds_its_residual_in_the_projection():
    """Stages 1-2 (GLI = ``x + conv_op(norm(x))``): without autograd the residual is added in
    place to the op's last convolution, no separate out-of-place addition; values unchanged."""
    from mmevo.models.backbones.eatformer import GLI
    torch.manual_seed(0)
    gli = GLI(8, ['conv'], 4, 7).eval()
    for bn in (gli.norm, gli.ops[0].norm):
        bn.load_state_dict(_bn(8).state_dict())
    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=CL)
    ref = gli(x).detach()
    with torch.no_grad(), torch.profiler.profile(record_shapes=True) as prof:
        out = gli(x)
    map_adds = [e.name for e in prof.events()
                if e.name in ('aten::add', 'aten::add_') and list(x.shape) in e.input_shapes]
    assert map_adds == ['aten::add_']
    torch.testing.assert_close(out, ref)

# Copyright (c) mmevo contributors. All rights reserved.
"""The depth-wise convolutions with the custom backward compute the plain gradients."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmevo.models.backbones.eatformer.lean_nodes import dwconv_silu_mix
from mmevo.models.layers.depthwise import dwconv
from mmevo.testing import saved_tensor_bytes

# (kernel, dilation, padding, bias, input size): MSRA, GLI and MD-MSA cases, odd sizes
CASES = [(3, 1, 1, True, (9, 11)), (3, 2, 2, True, (9, 11)), (3, 3, 3, False, (14, 14)),
         (5, 1, 2, True, (7, 7)), (5, 1, 2, False, (10, 13)), (3, 2, 1, True, (8, 8))]


def _assert_same_gradients(out, ref, inputs, ref_inputs=None):
    """``out`` and ``ref`` agree, and so do their gradients w.r.t. ``inputs`` (``ref_inputs``)
    for one random output gradient."""
    torch.testing.assert_close(out, ref)
    grad = torch.randn_like(ref)
    for ours, plain in zip(torch.autograd.grad(out, inputs, grad),
                           torch.autograd.grad(ref, ref_inputs or inputs, grad)):
        torch.testing.assert_close(ours, plain)


@pytest.mark.parametrize('kernel,dilation,padding,bias,size', CASES)
def test_dwconv_gradients_equal_the_plain_convolution(kernel, dilation, padding, bias, size):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 6, kernel, padding=padding, dilation=dilation, groups=6,
                     bias=bias).double()
    x = torch.randn(3, 6, *size, dtype=torch.float64, requires_grad=True)
    params = (x, conv.weight) + ((conv.bias, ) if bias else ())
    out = dwconv(x, conv)
    assert type(out.grad_fn).__name__ == '_DWConvBackward'
    _assert_same_gradients(out, conv(x), params)
    # numerical Jacobians on a smaller problem
    small = nn.Conv2d(2, 2, kernel, padding=padding, dilation=dilation, groups=2,
                      bias=bias).double()
    x = torch.randn(1, 2, 7, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x_: dwconv(x_, small), (x, ), fast_mode=True)


def test_dwconv_channels_last_float32():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 5, padding=2, groups=8).to(memory_format=torch.channels_last)
    x = torch.randn(2, 8, 12, 9).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    grad = torch.randn(2, 8, 12, 9)
    ours = torch.autograd.grad(dwconv(x, conv), (x, conv.weight, conv.bias), grad)
    xd = x.detach().double().requires_grad_()
    convd = nn.Conv2d(8, 8, 5, padding=2, groups=8).double()
    convd.load_state_dict(conv.state_dict())
    ref = torch.autograd.grad(convd(xd), (xd, convd.weight, convd.bias), grad.double())
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-5)


def test_dwconv_falls_back_off_the_fast_path():
    conv = nn.Conv2d(4, 4, 3, padding=1, groups=4)
    x = torch.randn(1, 4, 6, 6, requires_grad=True)
    # without autograd, under autocast and for dense or strided convolutions: plain ops
    with torch.no_grad():
        torch.testing.assert_close(dwconv(x, conv), conv(x))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert type(dwconv(x, conv).grad_fn).__name__ != '_DWConvBackward'
    for other in (nn.Conv2d(4, 4, 3, padding=1), nn.Conv2d(4, 4, 3, 2, 1, groups=4)):
        assert type(dwconv(x, other).grad_fn).__name__ == 'ConvolutionBackward0'


def _plain_mix(h, convs, mix):
    return sum(F.silu(conv(h)) * mix[i] for i, conv in enumerate(convs))


@pytest.mark.parametrize('dilations', [(1, 2, 3), (1, )])
@pytest.mark.parametrize('with_proj', [False, True])
def test_dwconv_silu_mix_equals_the_plain_branches(dilations, with_proj):
    torch.manual_seed(0)
    n = len(dilations)
    convs = nn.ModuleList(
        nn.Conv2d(5, 5, 3, padding=d, dilation=d, groups=5) for d in dilations).double()
    proj = nn.Conv2d(5, 5, 1, bias=False).double() if with_proj else None
    alphas = torch.randn(n, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 5, 10, 9, dtype=torch.float64, requires_grad=True)
    params = (h, alphas, *convs.parameters()) + ((proj.weight, ) if with_proj else ())
    out = dwconv_silu_mix(h, convs, alphas.softmax(-1) / n, proj)
    assert type(out.grad_fn).__name__ == '_DWConvSiLUMixBackward'
    ref = _plain_mix(h, convs, alphas.softmax(-1) / n)
    if with_proj:
        ref = proj(ref)
    _assert_same_gradients(out, ref, params)
    assert torch.autograd.gradcheck(
        lambda h_, a_: dwconv_silu_mix(h_, convs, a_.softmax(-1) / n, proj),
        (h[:1, :, :6, :7].detach().requires_grad_(), alphas), fast_mode=True)


def test_dwconv_silu_mix_keeps_only_its_input():
    convs = nn.ModuleList(nn.Conv2d(16, 16, 3, padding=d, dilation=d, groups=16)
                          for d in (1, 2, 3))
    h = torch.randn(4, 16, 24, 24, requires_grad=True)
    mix = torch.full((3, ), 1 / 3, requires_grad=True)
    proj = nn.Conv2d(16, 16, 1, bias=False)
    _, lean = saved_tensor_bytes(lambda: dwconv_silu_mix(h, convs, mix, proj))
    _, plain = saved_tensor_bytes(lambda: proj(_plain_mix(h, convs, mix)))
    map_bytes = h.numel() * 4
    assert plain >= 7 * map_bytes and lean < 1.1 * map_bytes


@pytest.mark.parametrize('momentum', [0.1, None])
@pytest.mark.parametrize('with_scale', [False, True])
def test_dwconv_bn_silu_conv_equals_the_plain_op(momentum, with_scale):
    """GLI's conv op as one node: same output, gradients and BatchNorm running statistics."""
    from mmevo.models.backbones.eatformer import ConvOp
    torch.manual_seed(0)
    lean = ConvOp(6, 5).double()
    lean.norm.momentum = momentum
    with torch.no_grad():
        lean.norm.weight.uniform_(0.5, 1.5)
        lean.norm.bias.normal_()
    plain = ConvOp(6, 5).double()
    plain.load_state_dict(lean.state_dict())
    plain.norm.momentum = momentum
    x = torch.randn(3, 6, 9, 8, dtype=torch.float64, requires_grad=True)
    scale = torch.rand(6, dtype=torch.float64, requires_grad=True) if with_scale else None
    out = lean(x, scale)
    assert type(out.grad_fn).__name__ == '_DWConvBNSiLUConvBackward'
    ref = plain.pwconv(F.silu(plain.norm(plain.dwconv(x))))
    if scale is not None:
        ref = ref * scale.view(-1, 1, 1)
    for name in ('running_mean', 'running_var', 'num_batches_tracked'):
        torch.testing.assert_close(getattr(lean.norm, name), getattr(plain.norm, name))
    inputs = [x] + ([scale] if scale is not None else [])
    _assert_same_gradients(out, ref, inputs + list(lean.parameters()),
                           inputs + list(plain.parameters()))
    # eval mode (running statistics) and frozen parameters take the plain ops
    lean.eval()
    assert type(lean(x).grad_fn).__name__ != '_DWConvBNSiLUConvBackward'


def test_dwconv_bn_silu_conv_keeps_only_its_input():
    from mmevo.models.backbones.eatformer import ConvOp
    op = ConvOp(16, 5)
    x = torch.randn(4, 16, 24, 24, requires_grad=True)
    _, lean = saved_tensor_bytes(lambda: op(x))
    _, plain = saved_tensor_bytes(lambda: op.pwconv(F.silu(op.norm(op.dwconv(x)))))
    map_bytes = x.numel() * 4
    assert plain >= 3 * map_bytes and lean < 1.1 * map_bytes

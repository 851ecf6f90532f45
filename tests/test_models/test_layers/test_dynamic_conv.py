# Copyright (c) mmevo contributors. All rights reserved.
"""Dynamic depth-wise convolutions (per-sample and per-pixel kernels) against explicit loops."""
import contextlib

import pytest
import torch
import torch.nn.functional as F

from mmevo.models.layers import (
    DynamicDWConv2d,
    InhomogeneousDWConv2d,
    dynamic_conv,
    per_pixel_dwconv2d,
    per_sample_dwconv2d,
    plain_ops,
)


def _loop_per_sample(x, weight, bias, **conv):
    """One ``F.conv2d`` per sample: the reference for the batch-folded grouped convolution."""
    outs = []
    for b in range(x.shape[0]):
        sample_bias = None if bias is None else (bias if bias.dim() == 1 else bias[b])
        outs.append(F.conv2d(x[b:b + 1], weight[b].unsqueeze(1), sample_bias,
                             groups=x.shape[1], **conv))
    return torch.cat(outs)


@pytest.mark.parametrize('mode', ['fast', 'plain', 'export'])
@pytest.mark.parametrize('conv', [dict(padding=3), dict(padding=1, stride=2),
                                  dict(padding=(2, 4), dilation=2), dict()])
@pytest.mark.parametrize('bias', [None, 'shared', 'per_sample'])
def test_per_sample_dwconv2d_equals_a_loop_over_the_batch(conv, bias, mode, monkeypatch):
    """Forward and gradients, with the fast CPU backward, with plain ops and with the unfold
    form used while exporting (no constant holds the batch size)."""
    if mode == 'export':
        monkeypatch.setattr(dynamic_conv, 'exporting', lambda: True)
    torch.manual_seed(0)
    B, C = 3, 5
    x = torch.randn(B, C, 11, 9, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(B, C, 7, 5, dtype=torch.float64, requires_grad=True)
    b = {None: None, 'shared': torch.randn(C, dtype=torch.float64),
         'per_sample': torch.randn(B, C, dtype=torch.float64)}[bias]
    if b is not None:
        b.requires_grad_()
    params = [t for t in (x, weight, b) if t is not None]
    with plain_ops() if mode == 'plain' else contextlib.nullcontext():
        got = per_sample_dwconv2d(x, weight, b, **conv)
        grads = torch.autograd.grad(got.square().sum(), params)
    ref = _loop_per_sample(x, weight, b, **conv)
    ref_grads = torch.autograd.grad(ref.square().sum(), params)
    torch.testing.assert_close(got, ref)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize('stride', [1, 2])
def test_per_sample_dwconv2d_channels_last_input(stride):
    """A channels-last input runs on channels-last planes and gives a channels-last output."""
    x = torch.randn(3, 6, 10, 12)
    w = torch.randn(3, 6, 3, 3)
    b = torch.randn(6)
    ref = _loop_per_sample(x, w, b, padding=1, stride=stride)
    got = per_sample_dwconv2d(x.contiguous(memory_format=torch.channels_last), w, b, padding=1,
                              stride=stride)
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, ref)


@pytest.mark.parametrize('layout', [torch.contiguous_format, torch.channels_last])
def test_per_sample_dwconv2d_relu(layout):
    """``act='relu'``: a oneDNN post-op without autograd, F.relu otherwise; same values."""
    x = torch.randn(2, 8, 9, 11).contiguous(memory_format=layout)
    w = torch.randn(2, 8, 5, 5, requires_grad=True)
    ref = F.relu(_loop_per_sample(x, w, None, padding=2))
    with torch.no_grad():
        torch.testing.assert_close(per_sample_dwconv2d(x, w, padding=2, act='relu'), ref)
    got = per_sample_dwconv2d(x, w, padding=2, act='relu')
    torch.testing.assert_close(got, ref)
    got.sum().backward()
    assert w.grad is not None
    with pytest.raises(ValueError, match="act must be None or 'relu', got 'gelu'"):
        per_sample_dwconv2d(x, w, act='gelu')


def test_per_sample_dwconv2d_bad_shapes():
    x = torch.randn(2, 4, 8, 8)
    with pytest.raises(ValueError, match=r'same B and C.*\(2, 4, 8, 8\).*\(2, 3, 3, 3\)'):
        per_sample_dwconv2d(x, torch.randn(2, 3, 3, 3))
    with pytest.raises(ValueError, match=r'bias must be \(4,\) or \(2, 4\)'):
        per_sample_dwconv2d(x, torch.randn(2, 4, 3, 3), torch.randn(3))


def test_dynamic_dwconv_kernels_and_output():
    """Kernels come from the pooled input: conv2(ReLU(BN(conv1(mean)))), viewed (C, k, k); the
    output is the per-sample convolution with them plus the shared bias."""
    torch.manual_seed(0)
    conv = DynamicDWConv2d(8, 5).eval()
    with torch.no_grad():
        conv.bias.normal_()
        conv.norm.running_mean.normal_()
        conv.norm.running_var.uniform_(0.5, 1.5)
    x = torch.randn(3, 8, 9, 7)
    with torch.no_grad():
        pooled = x.mean((2, 3))
        hidden = F.relu(F.batch_norm(pooled @ conv.conv1.weight.flatten(1).t(),
                                     conv.norm.running_mean, conv.norm.running_var,
                                     conv.norm.weight, conv.norm.bias, eps=1e-5))
        kernels = (hidden @ conv.conv2.weight.flatten(1).t() + conv.conv2.bias).view(3, 8, 5, 5)
        torch.testing.assert_close(conv.kernels(x), kernels)
        ref = _loop_per_sample(x, kernels, conv.bias, padding=2)
        torch.testing.assert_close(conv(x), ref)
        # per-sample kernels: a sample's output does not depend on the rest of the batch
        torch.testing.assert_close(conv(x[1:2]), ref[1:2])


def test_dynamic_dwconv_batch_of_one_in_training_is_an_error():
    conv = DynamicDWConv2d(8, 3).train()
    with pytest.raises(ValueError, match=r'needs more than one sample in training; got a batch '
                                         r'of 1.*eval mode / norm_eval=True'):
        conv(torch.randn(1, 8, 6, 6))
    conv(torch.randn(2, 8, 6, 6)).sum().backward()  # batch 2 trains
    assert conv.conv1.weight.grad is not None
    with torch.no_grad():
        assert conv.eval()(torch.randn(1, 8, 6, 6)).shape == (1, 8, 6, 6)


def test_dynamic_dwconv_bad_arguments():
    with pytest.raises(ValueError, match='kernel_size must be odd, got 4'):
        DynamicDWConv2d(8, 4)
    with pytest.raises(ValueError, match=r'channels=3 // reduction=4 leaves no hidden channel'):
        DynamicDWConv2d(3, 3)
    assert DynamicDWConv2d(8, 3, bias=False).bias is None


def _loop_per_pixel(x, weight, padding):
    B, C, H, W = x.shape
    G, k = weight.shape[1], weight.shape[2]
    xp = F.pad(x, (padding, ) * 4)
    out = torch.zeros_like(x)
    for c in range(C):
        g = c // (C // G)
        for u in range(k):
            for v in range(k):
                out[:, c] += weight[:, g, u, v] * xp[:, c, u:u + H, v:v + W]
    return out


def test_per_pixel_dwconv2d_equals_an_explicit_sum():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 7, 9, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 3, 5, 5, 7, 9, dtype=torch.float64, requires_grad=True)
    got = per_pixel_dwconv2d(x, weight, padding=2)
    ref = _loop_per_pixel(x, weight, 2)
    torch.testing.assert_close(got, ref)
    grads = torch.autograd.grad(got.square().sum(), (x, weight))
    ref_grads = torch.autograd.grad(ref.square().sum(), (x, weight))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)


def test_per_pixel_dwconv2d_with_constant_kernels_is_a_depthwise_conv():
    x = torch.randn(2, 4, 6, 6)
    kernels = torch.randn(2, 4, 3, 3)
    weight = kernels[..., None, None].expand(2, 4, 3, 3, 6, 6)
    torch.testing.assert_close(per_pixel_dwconv2d(x, weight, padding=1),
                               per_sample_dwconv2d(x, kernels, padding=1))


def test_inhomogeneous_dwconv():
    torch.manual_seed(0)
    conv = InhomogeneousDWConv2d(12, 3, group_channels=4).eval()
    assert conv.groups == 3
    x = torch.randn(2, 12, 5, 6)
    with torch.no_grad():
        kernels = conv.kernels(x)
        assert kernels.shape == (2, 3, 3, 3, 5, 6)
        torch.testing.assert_close(conv(x), _loop_per_pixel(x, kernels, 1))
    with pytest.raises(ValueError, match=r'group_channels=5 must divide channels=12'):
        InhomogeneousDWConv2d(12, 3, group_channels=5)
    with pytest.raises(ValueError, match=r'kernels are for 4x4 outputs but the input gives 30'):
        per_pixel_dwconv2d(x, torch.randn(2, 3, 3, 3, 4, 4), padding=1)

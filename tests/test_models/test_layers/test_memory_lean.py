# Copyright (c) mmevo contributors. All rights reserved.
"""The memory-lean training building blocks compute exactly what the plain formulation computes
and keep less for the backward pass."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath

from mmevo.models import EATFormer
from mmevo.models.layers import act_conv
from mmevo.models.layers.residual import add_residual
from mmevo.testing import saved_tensor_bytes

CONVS = [
    lambda: nn.Conv2d(6, 5, 1),
    lambda: nn.Conv2d(6, 6, 3, padding=2, dilation=2, groups=6),
    lambda: nn.Conv2d(6, 4, 3, stride=2, padding=1, bias=False),
]


@pytest.mark.parametrize('act', ['silu', 'gelu'])
@pytest.mark.parametrize('make_conv', CONVS)
def test_act_conv_equals_plain_forward_and_backward(act, make_conv):
    torch.manual_seed(0)
    conv = make_conv().double()
    scale = torch.rand(conv.out_channels, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, 6, 9, 9, dtype=torch.float64, requires_grad=True)
    plain = {'silu': F.silu, 'gelu': F.gelu}[act]
    inputs = (x, conv.weight, scale) + ((conv.bias, ) if conv.bias is not None else ())

    ours = act_conv(x, act, conv, scale=scale)
    ref = conv(plain(x)) * scale.view(-1, 1, 1)
    torch.testing.assert_close(ours, ref)
    grad = torch.randn_like(ref)
    for g_ours, g_ref in zip(torch.autograd.grad(ours, inputs, grad),
                             torch.autograd.grad(ref, inputs, grad)):
        torch.testing.assert_close(g_ours, g_ref)
    assert torch.autograd.gradcheck(lambda *a: act_conv(a[0], act, conv, scale=a[2]), inputs)


def test_act_conv_keeps_only_its_input():
    conv = nn.Conv2d(16, 16, 1)
    x = torch.randn(4, 16, 32, 32, requires_grad=True)
    _, lean = saved_tensor_bytes(lambda: act_conv(x, 'gelu', conv))
    _, plain = saved_tensor_bytes(lambda: conv(F.gelu(x)))
    map_bytes = x.numel() * 4
    assert plain >= 2 * map_bytes and lean < 1.1 * map_bytes


def test_act_conv_under_bf16_autocast():
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 1)
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        ours = act_conv(x, 'silu', conv)
        ref = conv(F.silu(x))
    assert ours.dtype == ref.dtype == torch.bfloat16
    torch.testing.assert_close(ours, ref)
    g_ours = torch.autograd.grad(ours.float().sum(), (x, conv.weight))
    g_ref = torch.autograd.grad(ref.float().sum(), (x, conv.weight))
    for a, b in zip(g_ours, g_ref):
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b, atol=2e-2, rtol=2e-2)


def test_add_residual_drops_whole_samples():
    x, y = torch.zeros(4000, 3, 2, 2), torch.ones(4000, 3, 2, 2)
    drop = DropPath(0.25).train()
    torch.manual_seed(0)
    out = add_residual(x, y, drop)
    per_sample = out.flatten(1)
    assert torch.all(per_sample == per_sample[:, :1])  # the whole sample is kept or dropped
    values = per_sample[:, 0].unique()
    torch.testing.assert_close(values, torch.tensor([0., 1 / 0.75]))
    kept = (per_sample[:, 0] > 0).float().mean().item()
    assert abs(kept - 0.75) < 0.03
    assert torch.equal(add_residual(x, y, drop.eval()), x + y)
    assert torch.equal(add_residual(x, y, nn.Identity()), x + y)


def test_eatformer_training_keeps_less_than_the_reference():
    """Activation memory of a training forward: the fast path keeps <= 80% of what the
    straightforward formulation keeps (GELU/SiLU recomputed, layer scales on weights)."""
    from mmevo.testing import as_reference
    torch.manual_seed(0)
    fast = EATFormer('tiny', drop_path_rate=0.).train()
    ref = EATFormer('tiny', drop_path_rate=0.).train()
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(4, 3, 192, 192)
    out_fast, lean = saved_tensor_bytes(lambda: fast(x))
    out_ref, plain = saved_tensor_bytes(lambda: as_reference(ref)(x))
    torch.testing.assert_close(out_fast[0], out_ref[0], atol=1e-5, rtol=1e-4)
    assert lean <= 0.8 * plain, (lean, plain)


@pytest.mark.parametrize('ops', [['mdmsa', 'conv'], ['msa', 'conv']])
def test_eatformer_training_step_equals_the_reference(ops):
    """Training forward + backward of the fast path (lean autograd nodes, fast depth-wise
    backward) give the reference formulation's outputs, gradients and BatchNorm statistics."""
    from mmevo.testing import as_reference
    torch.manual_seed(0)
    arch = dict(depths=[1, 2, 2, 1], embed_dims=[16, 16, 24, 32], dim_heads=[8, 8, 4, 8],
                op_names=[['conv'], ['conv'], ops, ops], window_sizes=[7, 7, 3, 2])
    fast = EATFormer(arch, out_indices=(0, 1, 2, 3), drop_path_rate=0.).train()
    with torch.no_grad():  # layer scales and op weights far from their tiny initial values
        for name, p in fast.named_parameters():
            if 'gamma' in name or 'alphas' in name:
                p.normal_(0.5, 0.2)
    ref = EATFormer(arch, out_indices=(0, 1, 2, 3), drop_path_rate=0.).train()
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(2, 3, 64, 96)
    outs_fast, outs_ref = fast(x), as_reference(ref)(x)
    for a, b in zip(outs_fast, outs_ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    grads = [torch.randn_like(o) for o in outs_fast]
    torch.autograd.backward(outs_fast, grads)
    torch.autograd.backward(outs_ref, grads)
    for (name, a), b in zip(fast.named_parameters(), ref.parameters()):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-4, rtol=1e-3, msg=name)
    for (name, a), b in zip(fast.named_buffers(), ref.buffers()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize('make_conv', CONVS)
@pytest.mark.parametrize('momentum', [0.1, None])
@pytest.mark.parametrize('act', [None, 'silu', 'gelu', 'hardswish'])
@pytest.mark.parametrize('keep_act', [False, True])
def test_bn_conv_equals_plain_and_keeps_only_its_input(make_conv, momentum, act, keep_act):
    from mmevo.models.layers.lean_ops import bn_conv
    activation = {None: nn.Identity(), 'silu': nn.SiLU(), 'gelu': nn.GELU(),
                  'hardswish': nn.Hardswish()}[act]
    torch.manual_seed(0)
    conv = make_conv().double()
    bn = nn.BatchNorm2d(6, momentum=momentum).double()
    ref_bn = nn.BatchNorm2d(6, momentum=momentum).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
    ref_bn.load_state_dict(bn.state_dict())
    x = torch.randn(3, 6, 9, 8, dtype=torch.float64, requires_grad=True)
    out, lean = saved_tensor_bytes(lambda: bn_conv(x, bn, conv, act, keep_act=keep_act))
    assert type(out.grad_fn).__name__ == '_BNConv2dBackward'
    ref, plain = saved_tensor_bytes(lambda: conv(activation(ref_bn(x))))
    torch.testing.assert_close(out, ref)
    # neither the normalised map nor the activated one is kept (keep_act: not the normalised)
    maps_dropped = (1 if act is None else 2) - keep_act
    assert lean < plain - (maps_dropped - 0.1) * x.numel() * 8
    if keep_act:
        assert lean > x.numel() * 8 * 1.9
    for name in ('running_mean', 'running_var', 'num_batches_tracked'):
        torch.testing.assert_close(getattr(bn, name), getattr(ref_bn, name))
    grad = torch.randn_like(ref)
    params = [x, bn.weight, bn.bias] + list(conv.parameters())
    ref_params = [x, ref_bn.weight, ref_bn.bias] + list(conv.parameters())
    for a, b in zip(torch.autograd.grad(out, params, grad),
                    torch.autograd.grad(ref, ref_params, grad)):
        torch.testing.assert_close(a, b)
    # eval mode: running statistics, plain ops
    bn.eval()
    assert type(bn_conv(x, bn, conv, act).grad_fn).__name__ == 'ConvolutionBackward0'
    torch.testing.assert_close(bn_conv(x, bn, conv, act), conv(activation(bn(x))))
    with pytest.raises(ValueError, match="bn_conv: act must be None or one of.*got 'relu'"):
        bn_conv(x, bn, conv, 'relu')


@pytest.mark.parametrize('make_conv', [None] + CONVS)
@pytest.mark.parametrize('momentum', [0.1, None])
@pytest.mark.parametrize('act', ['silu', 'gelu', 'hardswish'])
def test_conv_bn_act_lean_equals_plain_and_keeps_only_its_input(make_conv, momentum, act):
    from mmevo.models.layers.lean_ops import conv_bn_act_lean
    activation = {'silu': F.silu, 'gelu': F.gelu, 'hardswish': F.hardswish}[act]
    torch.manual_seed(0)
    conv = make_conv().double() if make_conv else None
    channels = conv.out_channels if conv else 6
    bn = nn.BatchNorm2d(channels, momentum=momentum).double()
    ref_bn = nn.BatchNorm2d(channels, momentum=momentum).double()
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
    ref_bn.load_state_dict(bn.state_dict())
    x = torch.randn(3, 6, 9, 8, dtype=torch.float64, requires_grad=True)
    out, lean = saved_tensor_bytes(lambda: conv_bn_act_lean(x, conv, bn, act))
    assert type(out.grad_fn).__name__ == '_ConvBNActBackward'
    ref, plain = saved_tensor_bytes(
        lambda: activation(ref_bn(conv(x) if conv else x)))
    torch.testing.assert_close(out, ref)
    # x, the parameters and the statistics only: no convolution output, no normalised map
    params = sum(p.numel() for p in conv.parameters()) if conv else 0
    assert lean <= (x.numel() + params + 4 * channels) * 8
    assert lean < plain - 0.9 * out.numel() * 8
    for name in ('running_mean', 'running_var', 'num_batches_tracked'):
        torch.testing.assert_close(getattr(bn, name), getattr(ref_bn, name))
    grad = torch.randn_like(ref)
    conv_params = list(conv.parameters()) if conv else []
    for a, b in zip(torch.autograd.grad(out, [x, bn.weight, bn.bias] + conv_params, grad),
                    torch.autograd.grad(ref, [x, ref_bn.weight, ref_bn.bias] + conv_params,
                                        grad)):
        torch.testing.assert_close(a, b)
    # eval mode: running statistics, plain ops
    bn.eval()
    torch.testing.assert_close(conv_bn_act_lean(x, conv, bn, act),
                               activation(bn(conv(x) if conv else x)))
    with pytest.raises(ValueError, match="conv_bn_act_lean: act must be one of.*got 'relu'"):
        conv_bn_act_lean(x, conv, bn, 'relu')

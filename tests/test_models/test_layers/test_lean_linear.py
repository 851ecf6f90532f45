# Copyright (c) mmevo contributors. All rights reserved.
"""``gelu_linear`` and ``layer_norm_linear``: the plain ops' values and gradients, fewer saved
tensors."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmevo.models.layers import plain_ops
from mmevo.models.layers.lean_linear import gelu_linear, layer_norm_linear
from mmevo.testing import saved_tensor_bytes


def _grads(fn, inputs, params):
    out = fn()
    grads = torch.autograd.grad(out.square().sum(), inputs + params)
    return out, grads


def test_gelu_linear_equals_plain_and_keeps_only_its_input():
    torch.manual_seed(0)
    fc = nn.Linear(32, 8).double()
    h = torch.randn(2, 5, 7, 32, dtype=torch.float64, requires_grad=True)
    params = list(fc.parameters())
    lean = _grads(lambda: gelu_linear(h, fc), [h], params)
    with plain_ops():
        plain = _grads(lambda: gelu_linear(h, fc), [h], params)
    torch.testing.assert_close(lean[0], plain[0])
    for a, b in zip(lean[1], plain[1]):
        torch.testing.assert_close(a, b)
    _, lean_bytes = saved_tensor_bytes(lambda: gelu_linear(h, fc))
    _, plain_bytes = saved_tensor_bytes(lambda: fc(F.gelu(h)))
    assert lean_bytes == h.numel() * 8 + fc.weight.numel() * 8
    assert plain_bytes > lean_bytes + h.numel() * 8 // 2  # GELU's output is not kept


def test_layer_norm_linear_equals_plain_and_keeps_only_its_input():
    torch.manual_seed(0)
    norm, fc = nn.LayerNorm(16, eps=1e-6).double(), nn.Linear(16, 48).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(3, 4, 5, 16, dtype=torch.float64, requires_grad=True)
    params = list(norm.parameters()) + list(fc.parameters())
    lean = _grads(lambda: layer_norm_linear(x, norm, fc), [x], params)
    plain = _grads(lambda: fc(norm(x)), [x], params)
    torch.testing.assert_close(lean[0], plain[0])
    for a, b in zip(lean[1], plain[1]):
        torch.testing.assert_close(a, b)
    _, lean_bytes = saved_tensor_bytes(lambda: layer_norm_linear(x, norm, fc))
    _, plain_bytes = saved_tensor_bytes(lambda: fc(norm(x)))
    assert plain_bytes - lean_bytes >= x.numel() * 8  # the normalised tokens are not kept
    with torch.no_grad():  # inference: the plain ops
        torch.testing.assert_close(layer_norm_linear(x, norm, fc), fc(norm(x)))

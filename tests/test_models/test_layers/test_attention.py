# Copyright (c) mmevo contributors. All rights reserved.
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from mmevo.models.layers import attention, fast_path, plain_ops


def _sdpa_math(q, k, v):
    with sdpa_kernel(SDPBackend.MATH):
        return F.scaled_dot_product_attention(q, k, v)


@pytest.mark.parametrize('tokens', [49, 100])
def test_attention_equals_sdpa_in_values_and_gradients(tokens, monkeypatch):
    # 49 tokens (a 7x7 window) take the explicit-matmul path, 100 (> 64) take SDPA
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, 'scaled_dot_product_attention',
                        lambda *a, **kw: calls.append(1) or sdpa(*a, **kw))
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, tokens, 8, dtype=torch.float64, requires_grad=True)
               for _ in range(3))
    out = attention.dot_product_attention(q, k, v, 0.)
    assert bool(calls) == (tokens * tokens > fast_path.SMALL_ATTENTION)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    ref = _sdpa_math(q, k, v)
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


def test_attention_with_dropout_uses_sdpa(monkeypatch):
    calls = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(attention.F, 'scaled_dot_product_attention',
                        lambda *a, **kw: calls.append(kw.get('dropout_p')) or sdpa(*a, **kw))
    q = torch.randn(2, 2, 49, 8)
    attention.dot_product_attention(q, q, q, 0.5)
    assert calls == [0.5]
    with plain_ops():  # the off switch: SDPA for short sequences too
        attention.dot_product_attention(q, q, q)
    assert calls == [0.5, 0.]

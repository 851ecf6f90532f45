# Copyright (c) mmevo contributors. All rights reserved.
"""GMA's fast routes: folded inference and the memory-lean nodes give the plain ops' values,
gradients and BatchNorm statistics. (Formulas and the shared q/k/v statistics:
tests/test_models/test_backbones/test_groupmixformer.py.)"""
import copy

import torch
import torch.nn as nn

from mmevo.models.backbones.groupmixformer import GMABlock
from mmevo.models.layers import GroupAggregator, GroupMixAttention, plain_ops
from mmevo.models.layers.group_mix_attention import softmax_context
from mmevo.testing import saved_tensor_bytes


def _randomise_bns(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)


def test_softmax_context_equals_plain_and_keeps_no_softmax():
    torch.manual_seed(0)
    # q, k, v as views of one proxies tensor, as in GMA: k costs nothing to keep
    proxies = torch.randn(3, 2, 4, 6, 30, dtype=torch.float64, requires_grad=True)
    q, k, v = proxies.unbind(0)

    def lean():
        return softmax_context(k, v).transpose(-2, -1) @ q

    def plain():
        return (k.softmax(-1) @ v.transpose(-2, -1)).transpose(-2, -1) @ q

    out, lean_bytes = saved_tensor_bytes(lean)
    ref, plain_bytes = saved_tensor_bytes(plain)
    torch.testing.assert_close(out, ref)
    assert plain_bytes - lean_bytes >= k.numel() * 8  # softmax(k) is not kept
    grad = torch.randn_like(ref)
    torch.testing.assert_close(torch.autograd.grad(out, proxies, grad)[0],
                               torch.autograd.grad(ref, proxies, grad)[0])
    assert torch.autograd.gradcheck(softmax_context, (k.detach().requires_grad_(),
                                                      v.detach().requires_grad_()))


def test_aggregator_fast_routes_equal_plain_ops():
    torch.manual_seed(0)
    aggregator = GroupAggregator(40)
    _randomise_bns(aggregator)
    qkv = torch.randn(6, 40, 9, 11).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():  # inference: BNs folded into the point-wise convolutions
        fast = aggregator.eval()(qkv)
        with plain_ops():
            plain = aggregator(qkv)
    for a, b in zip(fast, plain):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    aggregator.double().train()  # float64: the lean depth-wise gradients sum in another order
    twin = copy.deepcopy(aggregator)
    x = qkv.double().requires_grad_()
    fast = aggregator(x)
    with plain_ops():
        plain = twin(x)
    for a, b in zip(fast, plain):
        torch.testing.assert_close(a, b)
    loss = sum(t.square().sum() for t in fast)
    loss_plain = sum(t.square().sum() for t in plain)
    for (name, p), q in zip(aggregator.named_parameters(),
                            torch.autograd.grad(loss_plain, list(twin.parameters()))):
        torch.testing.assert_close(torch.autograd.grad(loss, p, retain_graph=True)[0], q,
                                   msg=name)
    for a, b in zip(aggregator.buffers(), twin.buffers()):
        torch.testing.assert_close(a, b)


def test_block_training_keeps_a_third_less():
    torch.manual_seed(0)
    block = GMABlock(40, mlp_ratio=4).train()
    x = torch.randn(2, 40, 14, 14).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    fast, fast_bytes = saved_tensor_bytes(lambda: block(x))
    with plain_ops():
        plain, plain_bytes = saved_tensor_bytes(lambda: block(x))
    torch.testing.assert_close(fast, plain)
    assert fast_bytes < 0.67 * plain_bytes, (fast_bytes, plain_bytes)


def test_stacked_qkv_is_the_linear_layer_split_in_three():
    torch.manual_seed(0)
    attn = GroupMixAttention(20)
    x = torch.randn(2, 20, 3, 5)
    qkv = attn.qkv(x.permute(0, 2, 3, 1))  # (B, H, W, 3C): q | k | v
    expected = torch.cat(qkv.split(20, dim=-1), dim=0)  # stacked on the batch axis
    torch.testing.assert_close(attn.stacked_qkv(x), expected)

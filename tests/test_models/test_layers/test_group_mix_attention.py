# Copyright (c) mmevo contributors. All rights reserved.
"""GMA's fast routes: folded inference and the memory-lean BN + Hardswish node give the plain
ops' values, gradients and BatchNorm statistics. (Formulas and the shared q/k/v statistics:
tests/test_models/test_backbones/test_groupmixformer.py.)"""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmevo.models.backbones.groupmixformer import GMABlock
from mmevo.models.layers import GroupAggregator, GroupMixAttention, plain_ops
from mmevo.models.layers.group_mix_attention import bn_hardswish
from mmevo.testing import saved_tensor_bytes


def _randomise_bns(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.5, 0.5)


def test_bn_hardswish_equals_plain_and_keeps_only_its_input():
    torch.manual_seed(0)
    bn = nn.BatchNorm2d(6).double().train()
    _randomise_bns(bn)
    bn_plain = copy.deepcopy(bn)
    x = torch.randn(4, 6, 5, 7, dtype=torch.float64, requires_grad=True)
    lean = bn_hardswish(x, bn)
    plain = F.hardswish(bn_plain(x))
    torch.testing.assert_close(lean, plain)
    for a, b in zip(torch.autograd.grad(lean.square().sum(), [x, bn.weight, bn.bias]),
                    torch.autograd.grad(plain.square().sum(), [x, bn_plain.weight,
                                                               bn_plain.bias])):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(bn.running_mean, bn_plain.running_mean)
    torch.testing.assert_close(bn.running_var, bn_plain.running_var)
    assert bn.num_batches_tracked == bn_plain.num_batches_tracked == 1
    _, lean_bytes = saved_tensor_bytes(lambda: bn_hardswish(x, bn))
    _, plain_bytes = saved_tensor_bytes(lambda: F.hardswish(bn(x)))
    assert plain_bytes - lean_bytes >= x.numel() * 8  # the normalised map is not kept


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


def test_block_training_keeps_a_quarter_less():
    torch.manual_seed(0)
    block = GMABlock(40, mlp_ratio=4).train()
    x = torch.randn(2, 40, 14, 14).contiguous(memory_format=torch.channels_last)
    x.requires_grad_()
    fast, fast_bytes = saved_tensor_bytes(lambda: block(x))
    with plain_ops():
        plain, plain_bytes = saved_tensor_bytes(lambda: block(x))
    torch.testing.assert_close(fast, plain)
    assert fast_bytes < 0.8 * plain_bytes, (fast_bytes, plain_bytes)


def test_stacked_qkv_is_the_linear_layer_split_in_three():
    torch.manual_seed(0)
    attn = GroupMixAttention(20)
    x = torch.randn(2, 20, 3, 5)
    qkv = attn.qkv(x.permute(0, 2, 3, 1))  # (B, H, W, 3C): q | k | v
    expected = torch.cat(qkv.split(20, dim=-1), dim=0)  # stacked on the batch axis
    torch.testing.assert_close(attn.stacked_qkv(x), expected)

# Copyright (c) mmevo contributors. All rights reserved.
"""Depth-wise convolutions for training on CPU, with a faster backward and fewer stored maps.

oneDNN's backward of a depth-wise convolution is fast only for a 3x3 kernel without dilation: with
dilation 2-3 (MSRA) its input gradient takes ~14x its forward, with a 5x5 kernel (GLI, MD-MSA)
its weight gradient ~8x. Both gradients are convolutions themselves, and :class:`_DWConv`
computes them as forward convolutions:

* input gradient: the depth-wise convolution of the output gradient with the flipped kernel
  (stride 1, padding ``dilation * (k - 1) - padding``);
* weight gradient: for every (sample, channel) plane, the correlation of the padded input with the
  output gradient, i.e. one depth-wise convolution over ``B * C`` planes whose kernels are the
  output-gradient planes (stride = dilation), summed over the batch.

:func:`dwconv` (a module) and :func:`dwconv2d` (tensors) apply only where
:func:`~.fast_path.cpu_lean_training` allows it (training on CPU without autocast, outside
``torch.compile``, fast path on); elsewhere the plain convolution runs. :func:`grad_input` and
:func:`grad_weight` are public for the fused sub-layer nodes of the families (EATFormer's MSRA
and GLI conv op).
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from .fast_path import cpu_lean_training, depthwise_conv

_Pair = Tuple[int, int]


def grad_input(grad: torch.Tensor, weight: torch.Tensor, padding: _Pair,
               dilation: _Pair) -> torch.Tensor:
    """Input gradient of a stride-1 depth-wise convolution, as a forward convolution."""
    kh, kw = weight.shape[-2:]
    pad = (dilation[0] * (kh - 1) - padding[0], dilation[1] * (kw - 1) - padding[1])
    return F.conv2d(grad, weight.flip(-1, -2), None, 1, pad, dilation, weight.shape[0])


def grad_weight(x: torch.Tensor, grad: torch.Tensor, weight: torch.Tensor, padding: _Pair,
                dilation: _Pair) -> torch.Tensor:
    """Weight gradient of a stride-1 depth-wise convolution, as a forward convolution."""
    C, _, kh, kw = weight.shape
    if (kh, kw) == (3, 3):  # oneDNN's own weight gradient is fast here
        return torch.ops.aten.convolution_backward(
            grad, x, weight, None, [1, 1], list(padding), list(dilation), False, [0, 0], C,
            [False, True, False])[1]
    B, _, H, W = x.shape
    planes = x.contiguous().view(1, B * C, H, W)
    kernels = grad.contiguous().view(B * C, 1, *grad.shape[-2:])
    corr = F.conv2d(planes, kernels, None, dilation, padding, 1, B * C)
    return corr.view(B, C, kh, kw).sum(0).unsqueeze(1)


class _DWConv(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, weight, bias, padding, dilation):
        ctx.save_for_backward(x, weight)
        ctx.conv = (padding, dilation, bias is not None)
        return F.conv2d(x, weight, bias, 1, padding, dilation, weight.shape[0])

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        padding, dilation, has_bias = ctx.conv
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_input(grad, weight, padding, dilation) if need_x else None
        grad_w = grad_weight(x, grad, weight, padding, dilation) if need_w else None
        grad_b = grad.sum((0, 2, 3)) if need_b and has_bias else None
        return grad_x, grad_w, grad_b, None, None


def dwconv2d(x: torch.Tensor,
             weight: torch.Tensor,
             bias: Optional[torch.Tensor] = None,
             padding: Union[int, _Pair] = 0,
             dilation: Union[int, _Pair] = 1) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, 1, padding, dilation, groups=C)``, a stride-1 depth-wise
    convolution (``weight`` of shape ``(C, 1, kh, kw)``), with the fast backward when training
    on CPU; for kernels that are activations too (e.g. per-sample kernels)."""
    padding, dilation = _pair(padding), _pair(dilation)
    if not cpu_lean_training(x, weight, bias):
        return F.conv2d(x, weight, bias, 1, padding, dilation, weight.shape[0])
    return _DWConv.apply(x, weight, bias, padding, dilation)


def dwconv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)`` for a stride-1 depth-wise ``conv``, with the fast backward when training on
    CPU."""
    if not (depthwise_conv(conv) and cpu_lean_training(x, conv.weight, conv.bias)):
        return conv(x)
    return _DWConv.apply(x, conv.weight, conv.bias, conv.padding, conv.dilation)

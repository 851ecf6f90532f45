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

:func:`dwconv_silu_mix` is MSRA's multi-dilation branch mix ``sum_i w_i * SiLU(conv_i(h))`` as one
autograd node that keeps only ``h`` (the branch maps are recomputed in backward: a depth-wise
convolution costs ~1 ms at stage 3), instead of two maps per branch.

Both are used only where they pay off: training on CPU without autocast (elsewhere the plain
ops run) and outside ``torch.compile``.
"""
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

_Pair = Tuple[int, int]


def _is_depthwise(conv: nn.Conv2d) -> bool:
    return (type(conv) is nn.Conv2d and conv.groups == conv.in_channels == conv.out_channels
            and conv.stride == (1, 1) and conv.padding_mode == 'zeros'
            and not isinstance(conv.padding, str))


def lean_dwconv_enabled(x: torch.Tensor, *params: Optional[torch.Tensor]) -> bool:
    """Whether the custom depth-wise backward applies: autograd on a CPU float graph."""
    return (torch.is_grad_enabled() and x.device.type == 'cpu'
            and x.dtype in (torch.float32, torch.float64)
            and (x.requires_grad or any(p is not None and p.requires_grad for p in params))
            and not torch.is_autocast_enabled('cpu') and not torch.compiler.is_compiling())


def _grad_input(grad: torch.Tensor, weight: torch.Tensor, padding: _Pair,
                dilation: _Pair) -> torch.Tensor:
    kh, kw = weight.shape[-2:]
    pad = (dilation[0] * (kh - 1) - padding[0], dilation[1] * (kw - 1) - padding[1])
    return F.conv2d(grad, weight.flip(-1, -2), None, 1, pad, dilation, weight.shape[0])


def _grad_weight(x: torch.Tensor, grad: torch.Tensor, weight: torch.Tensor, padding: _Pair,
                 dilation: _Pair) -> torch.Tensor:
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
        grad_x = _grad_input(grad, weight, padding, dilation) if need_x else None
        grad_w = _grad_weight(x, grad, weight, padding, dilation) if need_w else None
        grad_b = grad.sum((0, 2, 3)) if need_b and has_bias else None
        return grad_x, grad_w, grad_b, None, None


def dwconv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)`` for a stride-1 depth-wise ``conv``, with the fast backward when training on
    CPU."""
    if not (_is_depthwise(conv) and lean_dwconv_enabled(x, conv.weight, conv.bias)):
        return conv(x)
    return _DWConv.apply(x, conv.weight, conv.bias, conv.padding, conv.dilation)


class _DWConvSiLUMix(torch.autograd.Function):

    @staticmethod
    def forward(ctx, h, mix, convs, *params):
        ctx.save_for_backward(h, mix, *params)
        ctx.convs = convs
        out = None
        for i, (padding, dilation) in enumerate(convs):
            branch = F.silu(
                F.conv2d(h, params[2 * i], params[2 * i + 1], 1, padding, dilation,
                         h.shape[1]),
                inplace=True)
            out = branch.mul_(mix[i]) if out is None else out.add_(branch.mul_(mix[i]))
        return out

    @staticmethod
    def backward(ctx, grad):
        h, mix, *params = ctx.saved_tensors
        grads: List[Optional[torch.Tensor]] = [None] * len(params)
        grad_h = torch.zeros_like(h) if ctx.needs_input_grad[0] else None
        grad_mix = torch.empty_like(mix)
        for i, (padding, dilation) in enumerate(ctx.convs):
            weight, bias = params[2 * i], params[2 * i + 1]
            pre = F.conv2d(h, weight, bias, 1, padding, dilation, h.shape[1])
            grad_mix[i] = (grad * F.silu(pre)).sum()
            grad_pre = torch.ops.aten.silu_backward(grad * mix[i], pre)
            del pre
            if grad_h is not None:
                grad_h.add_(_grad_input(grad_pre, weight, padding, dilation))
            if ctx.needs_input_grad[3 + 2 * i]:
                grads[2 * i] = _grad_weight(h, grad_pre, weight, padding, dilation)
            if bias is not None and ctx.needs_input_grad[4 + 2 * i]:
                grads[2 * i + 1] = grad_pre.sum((0, 2, 3))
        return (grad_h, grad_mix if ctx.needs_input_grad[1] else None, None, *grads)


def dwconv_silu_mix(h: torch.Tensor, convs: Sequence[nn.Conv2d],
                    mix: torch.Tensor) -> torch.Tensor:
    """``sum_i mix[i] * SiLU(convs[i](h))`` for stride-1 depth-wise ``convs``.

    When training on CPU it is one autograd node that stores only ``h`` (and the fast depth-wise
    backward); otherwise the plain ops.
    """
    params = [p for conv in convs for p in (conv.weight, conv.bias)]
    if not (all(_is_depthwise(c) for c in convs) and lean_dwconv_enabled(h, mix, *params)):
        out = None
        for i, conv in enumerate(convs):
            branch = F.silu(conv(h)) * mix[i]
            out = branch if out is None else out + branch
        return out
    specs = tuple((conv.padding, conv.dilation) for conv in convs)
    return _DWConvSiLUMix.apply(h, mix, specs, *params)

# Copyright (c) mmevo contributors. All rights reserved.
"""EATFormer's sub-layers as single autograd nodes for training on CPU.

Each keeps only its input and recomputes the rest in backward (a depth-wise convolution costs
~1 ms at stage 3), with the fast depth-wise gradients of :mod:`mmevo.models.layers.depthwise`:

* :func:`dwconv_silu_mix`: MSRA's pre-norm, branches and projection,
  ``proj(sum_i w_i * SiLU(conv_i(BN(x))))`` (``2 * branches + 2`` maps fewer);
* :func:`dwconv_bn_silu_conv`: GLI's conv op, ``pw(SiLU(BN(dw(x))))`` with batch statistics
  (three maps fewer; the BatchNorm's running statistics are updated as ``nn.BatchNorm2d`` does).

They apply where :func:`~mmevo.models.layers.fast_path.cpu_lean_training` allows; elsewhere the
plain ops run.
"""
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...layers.depthwise import dwconv, grad_input, grad_weight
from ...layers.fast_path import batch_stats_norm, cpu_lean_training, depthwise_conv, pointwise_conv
from ...layers.lean_ops import (
    act_conv,
    batch_norm_backward,
    batch_norm_train,
    bn_recompute,
    scaled_conv_params,
)


class _DWConvSiLUMix(torch.autograd.Function):

    @staticmethod
    def _branches(h, convs, params):
        return [
            F.conv2d(h, params[2 * i], params[2 * i + 1], 1, padding, dilation, h.shape[1])
            for i, (padding, dilation) in enumerate(convs)
        ]

    @staticmethod
    def forward(ctx, x, mix, proj_w, bn_w, bn_b, bn, convs, *params):
        h, mean, invstd = x, None, None
        if bn is not None:
            h, mean, invstd = batch_norm_train(x, bn_w, bn_b, bn)
            ctx.eps = bn.eps
        ctx.save_for_backward(x, mix, proj_w, bn_w, bn_b, mean, invstd, *params)
        ctx.convs = convs
        out = None
        for i, pre in enumerate(_DWConvSiLUMix._branches(h, convs, params)):
            branch = F.silu(pre, inplace=True).mul_(mix[i])
            out = branch if out is None else out.add_(branch)
        return out if proj_w is None else F.conv2d(out, proj_w)

    @staticmethod
    def backward(ctx, grad):
        x, mix, proj_w, bn_w, bn_b, mean, invstd, *params = ctx.saved_tensors
        need = ctx.needs_input_grad
        h = x if mean is None else bn_recompute(x, bn_w, bn_b, mean, invstd)
        pres = _DWConvSiLUMix._branches(h, ctx.convs, params)
        grad_proj = None
        if proj_w is not None:
            out = None
            for i, pre in enumerate(pres):
                out = F.silu(pre) * mix[i] if out is None else out.addcmul_(F.silu(pre), mix[i])
            grad, grad_proj, _ = torch.ops.aten.convolution_backward(
                grad, out, proj_w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1,
                [True, need[2], False])
            del out
        grads: List[Optional[torch.Tensor]] = [None] * len(params)
        need_h = need[0] or (mean is not None and (need[3] or need[4]))
        grad_h = torch.zeros_like(h) if need_h else None
        grad_mix = torch.empty_like(mix)
        for i, (padding, dilation) in enumerate(ctx.convs):
            weight, bias, pre = params[2 * i], params[2 * i + 1], pres[i]
            grad_mix[i] = (grad * F.silu(pre)).sum()
            grad_pre = torch.ops.aten.silu_backward(grad * mix[i], pre)
            pres[i] = None
            if grad_h is not None:
                grad_h.add_(grad_input(grad_pre, weight, padding, dilation))
            if need[7 + 2 * i]:
                grads[2 * i] = grad_weight(h, grad_pre, weight, padding, dilation)
            if bias is not None and need[8 + 2 * i]:
                grads[2 * i + 1] = grad_pre.sum((0, 2, 3))
        grad_x, grad_bn_w, grad_bn_b = grad_h, None, None
        if mean is not None and grad_h is not None:
            del h
            grad_x, grad_bn_w, grad_bn_b = batch_norm_backward(
                grad_h, x, bn_w, bn_b, mean, invstd, ctx.eps, need[0], need[3], need[4])
        return (grad_x, grad_mix if need[1] else None, grad_proj, grad_bn_w, grad_bn_b, None,
                None, *grads)


def dwconv_silu_mix(x: torch.Tensor,
                    convs: Sequence[nn.Conv2d],
                    mix: torch.Tensor,
                    proj: Optional[nn.Conv2d] = None,
                    norm: Optional[nn.Module] = None) -> torch.Tensor:
    """``proj(sum_i mix[i] * SiLU(convs[i](norm(x))))`` for stride-1 depth-wise ``convs``, an
    optional bias-free 1x1 ``proj`` and an optional BatchNorm ``norm`` (MSRA's pre-norm,
    branches and output projection).

    When training on CPU it is one autograd node that stores only ``x`` (and uses the fast
    depth-wise backward); otherwise the plain ops.
    """
    params = [p for conv in convs for p in (conv.weight, conv.bias)]
    lean_proj = proj is None or pointwise_conv(proj, bias=False)
    lean_norm = norm is None or isinstance(norm, nn.Identity) or batch_stats_norm(norm)
    proj_w = None if proj is None else proj.weight
    bn = norm if norm is not None and not isinstance(norm, nn.Identity) else None
    bn_w, bn_b = (bn.weight, bn.bias) if bn is not None else (None, None)
    if not (lean_proj and lean_norm and all(depthwise_conv(c) for c in convs)
            and cpu_lean_training(x, mix, proj_w, bn_w, *params)):
        h = x if norm is None else norm(x)
        out = None
        for i, conv in enumerate(convs):
            branch = F.silu(conv(h)) * mix[i]
            out = branch if out is None else out + branch
        return out if proj is None else proj(out)
    specs = tuple((conv.padding, conv.dilation) for conv in convs)
    return _DWConvSiLUMix.apply(x, mix, proj_w, bn_w, bn_b, bn, specs, *params)


class _DWConvBNSiLUConv(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, dw_w, dw_b, bn_w, bn_b, pw_w, pw_b, bn, padding, dilation):
        y = F.conv2d(x, dw_w, dw_b, 1, padding, dilation, x.shape[1])
        z, mean, invstd = batch_norm_train(y, bn_w, bn_b, bn)
        ctx.save_for_backward(x, dw_w, dw_b, bn_w, bn_b, pw_w, mean, invstd)
        ctx.conf = (padding, dilation, bn.eps, pw_b is not None)
        return F.conv2d(F.silu(z, inplace=True), pw_w, pw_b)

    @staticmethod
    def backward(ctx, grad):
        x, dw_w, dw_b, bn_w, bn_b, pw_w, mean, invstd = ctx.saved_tensors
        padding, dilation, eps, has_pw_b = ctx.conf
        need = ctx.needs_input_grad
        # recompute the maps the forward did not keep
        y = F.conv2d(x, dw_w, dw_b, 1, padding, dilation, x.shape[1])
        z = bn_recompute(y, bn_w, bn_b, mean, invstd)
        grad_a, grad_pw_w, grad_pw_b = torch.ops.aten.convolution_backward(
            grad, F.silu(z), pw_w, [pw_w.shape[0]] if has_pw_b else None, [1, 1], [0, 0],
            [1, 1], False, [0, 0], 1, [True, need[5], need[6] and has_pw_b])
        grad_z = torch.ops.aten.silu_backward(grad_a, z)
        del z, grad_a
        grad_y, grad_bn_w, grad_bn_b = batch_norm_backward(grad_z, y, bn_w, bn_b, mean, invstd,
                                                           eps, True, need[3], need[4])
        del grad_z, y
        grad_x = grad_input(grad_y, dw_w, padding, dilation) if need[0] else None
        grad_dw_w = grad_weight(x, grad_y, dw_w, padding, dilation) if need[1] else None
        grad_dw_b = grad_y.sum((0, 2, 3)) if need[2] and dw_b is not None else None
        return (grad_x, grad_dw_w, grad_dw_b, grad_bn_w, grad_bn_b, grad_pw_w, grad_pw_b, None,
                None, None)


def dwconv_bn_silu_conv(x: torch.Tensor, dw: nn.Conv2d, bn: nn.Module, pw: nn.Conv2d,
                        scale: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``scale * pw(SiLU(bn(dw(x))))`` for a stride-1 depth-wise ``dw``, a BatchNorm ``bn`` and
    a 1x1 ``pw`` (GLI's conv op).

    When training on CPU with batch statistics it is one autograd node that stores only ``x``
    (the depth-wise output, the normalised map and its activation are recomputed in backward),
    instead of three maps.
    """
    pw_w, pw_b = scaled_conv_params(pw, scale)
    if not (depthwise_conv(dw) and batch_stats_norm(bn) and pointwise_conv(pw)
            and cpu_lean_training(x, dw.weight, dw.bias, bn.weight, bn.bias, pw_w)):
        return act_conv(bn(dwconv(x, dw)), 'silu', pw, scale, inplace=True)
    return _DWConvBNSiLUConv.apply(x, dw.weight, dw.bias, bn.weight, bn.bias, pw_w, pw_b, bn,
                                   dw.padding, dw.dilation)

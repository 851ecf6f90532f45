# Copyright (c) mmevo contributors. All rights reserved.
"""Training ops that keep less for the backward pass (memory-lean autograd nodes).

:func:`act_conv` is ``conv(act(x))`` keeping only ``x``.

Autograd normally stores both the activation's input (for the activation's gradient) and its
output (for the convolution's weight gradient). Recomputing the activation in the backward pass
instead costs one element-wise pass and saves one full map per use; in EATFormer (GELU between
the FFN convolutions, SiLU before the MSRA and GLI projections) that is ~20% of the activation
memory of a training step. Under ``torch.compile`` (and wherever
:func:`~.fast_path.lean_training` says no) the plain formulation is used: Inductor chooses what
to recompute itself.

:func:`bn_conv` is the same idea for ``conv(BN(x))`` and ``conv(act(BN(x)))`` in training: it
keeps ``x`` and the batch statistics and recomputes the normalised (and activated) map in backward
(one or two element-wise passes) instead of storing it. :func:`conv_bn_act_lean` is the other
order, ``act(BN(conv(x)))``: it keeps the convolution's input and recomputes its output too (for
a cheap convolution, e.g. point-wise, whose output would otherwise be stored for the BatchNorm).
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fast_path import batch_stats_norm, lean_training, plain_conv
from .folding import affine_after_conv

_ACTIVATIONS = {
    'silu': (F.silu, torch.ops.aten.silu_backward),
    'gelu': (F.gelu, torch.ops.aten.gelu_backward),
    'hardswish': (F.hardswish, torch.ops.aten.hardswish_backward),
}


class _ActConv2d(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, weight, bias, act, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conv = (stride, padding, dilation, groups)
        ctx.act = act
        ctx.has_bias = bias is not None
        return F.conv2d(_ACTIVATIONS[act][0](x), weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv
        act, act_backward = _ACTIVATIONS[ctx.act]
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        # Under autocast the forward convolution ran in grad_out's dtype: so does its backward.
        dtype = grad_out.dtype
        grad_a, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_out, act(x).to(dtype), weight.to(dtype),
            [weight.shape[0]] if ctx.has_bias else None, stride, padding, dilation, False,
            [0] * len(stride), groups, [need_x, need_w, need_b and ctx.has_bias])
        grad_x = act_backward(grad_a.to(x.dtype), x) if need_x else None
        if grad_w is not None:
            grad_w = grad_w.to(weight.dtype)
        if grad_b is not None:
            grad_b = grad_b.to(weight.dtype)
        return grad_x, grad_w, grad_b, None, None, None, None, None


def _activate(z: torch.Tensor, act: Optional[str]) -> torch.Tensor:
    """``act(z)``, in place where the activation allows it (``z`` is a temporary)."""
    if act is None:
        return z
    if act == 'gelu':
        return F.gelu(z)
    return _ACTIVATIONS[act][0](z, inplace=True)


def scaled_conv_params(conv: nn.Conv2d, scale: Optional[torch.Tensor] = None):
    """``conv``'s weight and bias multiplied by per-output-channel ``scale`` (differentiable).

    ``F.conv2d(x, *scaled_conv_params(conv, s))`` is ``s * conv(x)`` without autograd keeping
    the convolution's output for ``s``'s gradient.
    """
    if scale is None:
        return conv.weight, conv.bias
    return affine_after_conv(conv.weight, conv.bias, scale)


def act_conv(x: torch.Tensor,
             act: str,
             conv: nn.Conv2d,
             scale: Optional[torch.Tensor] = None,
             inplace: bool = False) -> torch.Tensor:
    """``scale * conv(act(x))`` for ``act`` in ``'silu'``, ``'gelu'``, storing only ``x``.

    Args:
        x (Tensor): Input of the activation.
        act (str): ``'silu'`` or ``'gelu'`` (exact, not tanh-approximated).
        conv (nn.Conv2d): A zero-padded 2-D convolution.
        scale (Tensor, optional): Per-output-channel factors (a layer scale), applied to the
            convolution's weight and bias rather than to its output.
        inplace (bool): Without autograd, SiLU may overwrite ``x``. Defaults to False.
    """
    weight, bias = scaled_conv_params(conv, scale)
    if not (lean_training(x, weight) and plain_conv(conv)):
        a = F.silu(x, inplace=inplace and not x.requires_grad) if act == 'silu' \
            else _ACTIVATIONS[act][0](x)
        return F.conv2d(a, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return _ActConv2d.apply(x, weight, bias, act, conv.stride, conv.padding, conv.dilation,
                            conv.groups)


def batch_norm_momentum(bn: nn.Module) -> float:
    """Update ``bn``'s batch counter and return the momentum its forward would use."""
    bn.num_batches_tracked.add_(1)
    return 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum


def batch_norm_train(x: torch.Tensor, bn_w: Optional[torch.Tensor], bn_b: Optional[torch.Tensor],
                     bn: nn.Module):
    """``bn``'s training-mode forward on ``x`` with the given affine parameters (batch
    statistics; ``bn``'s running statistics and counter updated). Returns ``(out, mean,
    invstd)``, the statistics for :func:`bn_recompute` and :func:`batch_norm_backward`."""
    return torch.ops.aten.native_batch_norm(x, bn_w, bn_b, bn.running_mean, bn.running_var, True,
                                            batch_norm_momentum(bn), bn.eps)


def batch_norm_backward(grad, x, bn_w, bn_b, mean, invstd, eps: float, need_x: bool,
                        need_w: bool, need_b: bool):
    """Gradients ``(x, weight, bias)`` of :func:`batch_norm_train` (None where not needed or
    where the parameter is None)."""
    return torch.ops.aten.native_batch_norm_backward(
        grad, x, bn_w, None, None, mean, invstd, True, eps,
        [need_x, need_w and bn_w is not None, need_b and bn_b is not None])


def bn_recompute(x, bn_w, bn_b, mean, invstd) -> torch.Tensor:
    """The training-mode BatchNorm output, from its input and saved batch statistics."""
    scale = invstd if bn_w is None else invstd * bn_w
    shift = -mean * scale if bn_b is None else bn_b - mean * scale
    return torch.addcmul(shift.view(-1, 1, 1), x, scale.view(-1, 1, 1))


class _BNConv2d(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, bn_w, bn_b, weight, bias, bn, act, keep_act, stride, padding, dilation,
                groups):
        z, mean, invstd = batch_norm_train(x, bn_w, bn_b, bn)
        a = _activate(z, act)
        ctx.save_for_backward(x, bn_w, bn_b, weight, mean, invstd, a if keep_act else None)
        ctx.conf = (stride, padding, dilation, groups, bn.eps, bias is not None, act)
        return F.conv2d(a, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, grad):
        x, bn_w, bn_b, weight, mean, invstd, a = ctx.saved_tensors
        stride, padding, dilation, groups, eps, has_bias, act = ctx.conf
        need = ctx.needs_input_grad
        z = None if a is not None and act is None else bn_recompute(x, bn_w, bn_b, mean, invstd)
        if a is None:
            a = z if act is None else _ACTIVATIONS[act][0](z)
        grad_a, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad, a, weight, [weight.shape[0]] if has_bias else None, stride, padding, dilation,
            False, [0] * len(stride), groups, [True, need[3], need[4] and has_bias])
        del a
        grad_z = grad_a if act is None else _ACTIVATIONS[act][1](grad_a, z)
        del z, grad_a
        grad_x, grad_bn_w, grad_bn_b = batch_norm_backward(grad_z, x, bn_w, bn_b, mean, invstd,
                                                           eps, need[0], need[1], need[2])
        return (grad_x, grad_bn_w, grad_bn_b, grad_w, grad_b) + (None, ) * 7


def bn_conv(x: torch.Tensor,
            bn: nn.Module,
            conv: nn.Conv2d,
            act: Optional[str] = None,
            keep_act: bool = False) -> torch.Tensor:
    """``conv(act(bn(x)))`` (``act`` in ``'silu'``, ``'gelu'``, ``'hardswish'`` or None) that
    keeps only ``x`` for the backward pass (the normalised and activated maps are recomputed
    from the saved batch statistics) when ``bn`` normalises with batch statistics; the plain
    ops otherwise.

    ``keep_act=True`` also keeps the activated map (the convolution's input): one map more than
    the default but one map less than the plain ops, and the backward pass recomputes only the
    normalised map (one cheap multiply-add), not the activation.
    """
    if act not in (None, *_ACTIVATIONS):
        raise ValueError(f'bn_conv: act must be None or one of {list(_ACTIVATIONS)}, got {act!r}')
    if not (batch_stats_norm(bn) and plain_conv(conv) and lean_training(x, conv.weight)):
        y = bn(x)
        return conv(y if act is None else _ACTIVATIONS[act][0](y))
    return _BNConv2d.apply(x, bn.weight, bn.bias, conv.weight, conv.bias, bn, act, keep_act,
                           conv.stride, conv.padding, conv.dilation, conv.groups)


class _ConvBNAct(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, weight, bias, bn_w, bn_b, bn, act, conv_args):
        y = x if weight is None else F.conv2d(x, weight, bias, *conv_args)
        z, mean, invstd = batch_norm_train(y, bn_w, bn_b, bn)
        del y
        ctx.save_for_backward(x, weight, bias, bn_w, bn_b, mean, invstd)
        ctx.conf = (conv_args, bn.eps, act)
        return _activate(z, act)

    @staticmethod
    def backward(ctx, grad):
        x, weight, bias, bn_w, bn_b, mean, invstd = ctx.saved_tensors
        conv_args, eps, act = ctx.conf
        need = ctx.needs_input_grad
        y = x if weight is None else F.conv2d(x, weight, bias, *conv_args)
        grad_z = _ACTIVATIONS[act][1](grad, bn_recompute(y, bn_w, bn_b, mean, invstd))
        need_y = need[0] or need[1] or need[2]
        grad_y, grad_bn_w, grad_bn_b = batch_norm_backward(grad_z, y, bn_w, bn_b, mean, invstd,
                                                           eps, need_y, need[3], need[4])
        del grad_z
        if weight is None:
            return (grad_y, None, None, grad_bn_w, grad_bn_b, None, None, None)
        stride, padding, dilation, groups = conv_args
        grad_x, grad_w, grad_b = torch.ops.aten.convolution_backward(
            grad_y, x, weight, [weight.shape[0]] if bias is not None else None, stride, padding,
            dilation, False, [0] * len(stride), groups,
            [need[0], need[1], need[2] and bias is not None])
        return (grad_x, grad_w, grad_b, grad_bn_w, grad_bn_b, None, None, None)


def conv_bn_act_lean(x: torch.Tensor, conv: Optional[nn.Conv2d], bn: nn.Module,
                     act: str) -> torch.Tensor:
    """``act(bn(conv(x)))`` (``conv`` may be None; ``act`` in ``'silu'``, ``'gelu'``,
    ``'hardswish'``) that keeps only ``x`` for the backward pass (the convolution's output and
    the normalised map are recomputed from ``x`` and the saved batch statistics) when ``bn``
    normalises with batch statistics; the plain ops otherwise."""
    if act not in _ACTIVATIONS:
        raise ValueError(f'conv_bn_act_lean: act must be one of {list(_ACTIVATIONS)}, '
                         f'got {act!r}')
    params = (bn.weight, ) if conv is None else (bn.weight, conv.weight)
    if not (batch_stats_norm(bn) and (conv is None or plain_conv(conv))
            and lean_training(x, *params)):
        return _ACTIVATIONS[act][0](bn(x if conv is None else conv(x)))
    if conv is None:
        return _ConvBNAct.apply(x, None, None, bn.weight, bn.bias, bn, act, None)
    return _ConvBNAct.apply(x, conv.weight, conv.bias, bn.weight, bn.bias, bn, act,
                            (conv.stride, conv.padding, conv.dilation, conv.groups))

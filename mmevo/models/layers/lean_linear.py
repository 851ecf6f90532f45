# Copyright (c) mmevo contributors. All rights reserved.
"""Token-wise training ops that keep less for the backward pass (memory-lean autograd nodes),
the linear-layer counterparts of :mod:`.lean_ops`:

* :func:`gelu_linear`: ``linear(GELU(h))`` keeping only ``h`` (GELU recomputed in backward);
* :func:`layer_norm_linear`: ``linear(LN(x))`` keeping only ``x`` and the LayerNorm statistics
  (the normalised tokens recomputed in backward).

A transformer MLP ``fc2(GELU(fc1(LN(x))))`` then stores ``x`` and ``fc1``'s output instead of
also the normalised tokens and the (4x wider) GELU output. Where
:func:`~.fast_path.lean_training` says no (inference, autocast, ``torch.compile``, the fast path
off), the plain ops run.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .fast_path import lean_training


def _linear_backward(grad, a, weight, need_a, need_w, need_b):
    """Gradients of ``F.linear(a, weight, bias)`` w.r.t. ``a``, ``weight``, ``bias``."""
    grad_a = grad @ weight if need_a else None
    grad2d = grad.reshape(-1, grad.shape[-1])
    grad_w = grad2d.t() @ a.reshape(-1, a.shape[-1]) if need_w else None
    grad_b = grad2d.sum(0) if need_b else None
    return grad_a, grad_w, grad_b


class _GeluLinear(torch.autograd.Function):

    @staticmethod
    def forward(ctx, h, weight, bias):
        ctx.save_for_backward(h, weight)
        ctx.has_bias = bias is not None
        return F.linear(F.gelu(h), weight, bias)

    @staticmethod
    def backward(ctx, grad):
        h, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        grad_a, grad_w, grad_b = _linear_backward(grad, F.gelu(h), weight, need[0], need[1],
                                                  need[2] and ctx.has_bias)
        grad_h = torch.ops.aten.gelu_backward(grad_a, h) if need[0] else None
        return grad_h, grad_w, grad_b


def gelu_linear(h: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """``linear(GELU(h))`` (exact GELU), storing only ``h`` when training."""
    if not lean_training(h, linear.weight):
        return linear(F.gelu(h))
    return _GeluLinear.apply(h, linear.weight, linear.bias)


class _LayerNormLinear(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, ln_w, ln_b, eps, weight, bias):
        shape = x.shape[-1:]
        z, mean, rstd = torch.ops.aten.native_layer_norm(x, shape, ln_w, ln_b, eps)
        ctx.save_for_backward(x, ln_w, ln_b, mean, rstd, weight)
        ctx.has_bias = bias is not None
        return F.linear(z, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, ln_w, ln_b, mean, rstd, weight = ctx.saved_tensors
        need = ctx.needs_input_grad
        z = (x - mean) * rstd
        if ln_w is not None:
            z = torch.addcmul(ln_b, z, ln_w) if ln_b is not None else z * ln_w
        grad_z, grad_w, grad_b = _linear_backward(grad, z, weight, True, need[4],
                                                  need[5] and ctx.has_bias)
        del z
        grad_x, grad_ln_w, grad_ln_b = torch.ops.aten.native_layer_norm_backward(
            grad_z, x, x.shape[-1:], mean, rstd, ln_w, ln_b,
            [need[0], need[1] and ln_w is not None, need[2] and ln_b is not None])
        return grad_x, grad_ln_w, grad_ln_b, None, grad_w, grad_b


def layer_norm_linear(x: torch.Tensor, norm: nn.LayerNorm, linear: nn.Linear) -> torch.Tensor:
    """``linear(LN(x))`` with the parameters of ``norm`` (an ``nn.LayerNorm`` or subclass, e.g.
    :class:`~.norm.LayerNorm2d`) applied over the last dimension of ``x`` (tokens), storing only
    ``x`` (and the statistics) when training."""
    if not (lean_training(x, linear.weight) and len(norm.normalized_shape) == 1):
        return linear(F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps))
    return _LayerNormLinear.apply(x, norm.weight, norm.bias, norm.eps, linear.weight, linear.bias)

# Copyright (c) mmevo contributors. All rights reserved.
"""Folding of eval-mode BatchNorms and per-channel scales into convolutions.

Each fold is an algebraic identity of eval-mode BatchNorm (a per-channel affine map); results
differ from the unfolded model only by float rounding. The ``affine_*`` functions compute folded
weights (differentiable; the on-the-fly folds of :mod:`.inference_conv` use them), the
``fold_*`` functions rewrite a module's parameters in place (the permanent folds of ``fuse()``),
and :func:`fuse_modules` is the one walker that ``fuse()`` of every mmevo model calls.
"""
from typing import Optional, Union

import torch
import torch.nn as nn
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm


def bn_affine(bn: _BatchNorm):
    """Eval-mode BatchNorm as ``scale * x + shift`` per channel (differentiable in its
    parameters)."""
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    return scale, shift


def affine_after_conv(weight: torch.Tensor, bias: Optional[torch.Tensor],
                      scale: torch.Tensor, shift: Optional[torch.Tensor] = None):
    """Weight and bias of ``scale * conv(x) + shift`` (per output channel; differentiable)."""
    weight = weight * scale.view(-1, 1, 1, 1)
    bias = bias * scale if bias is not None else None
    if shift is not None:
        bias = shift if bias is None else bias + shift
    return weight, bias


def affine_before_conv(weight: torch.Tensor, bias: Optional[torch.Tensor],
                       scale: torch.Tensor, shift: torch.Tensor):
    """Weight and bias of ``conv(scale * x + shift)`` for an unpadded dense 1x1 convolution."""
    folded_bias = weight.flatten(1) @ shift
    if bias is not None:
        folded_bias = folded_bias + bias
    return weight * scale.view(1, -1, 1, 1), folded_bias


def _with_bias(conv: nn.Conv2d) -> nn.Conv2d:
    if conv.bias is None:
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype,
                                             device=conv.weight.device))
    return conv


@torch.no_grad()
def fold_bn_after_conv(conv: nn.Conv2d, bn: _BatchNorm) -> nn.Conv2d:
    """``bn(conv(x))`` == ``conv'(x)``; updates ``conv`` in place and returns it."""
    weight, bias = affine_after_conv(conv.weight, conv.bias, *bn_affine(bn))
    conv = _with_bias(conv)
    conv.weight.copy_(weight)
    conv.bias.copy_(bias)
    return conv


@torch.no_grad()
def fold_bn_before_conv(bn: _BatchNorm, conv: nn.Conv2d) -> nn.Conv2d:
    """``conv(bn(x))`` == ``conv'(x)`` for an unpadded, ungrouped 1x1 convolution."""
    if conv.kernel_size != (1, 1) or conv.groups != 1:
        raise ValueError('only a dense 1x1 convolution can absorb the BatchNorm before it')
    weight, bias = affine_before_conv(conv.weight, conv.bias, *bn_affine(bn))
    conv = _with_bias(conv)
    conv.weight.copy_(weight)
    conv.bias.copy_(bias)
    return conv


@torch.no_grad()
def scale_conv_output(conv: nn.Conv2d, scale: Union[torch.Tensor, float]) -> nn.Conv2d:
    """``scale * conv(x)`` (per output channel or scalar) == ``conv'(x)``."""
    scale = torch.as_tensor(scale, dtype=conv.weight.dtype, device=conv.weight.device)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1) if scale.dim() else scale)
    if conv.bias is not None:
        conv.bias.mul_(scale.reshape(-1) if scale.dim() else scale)
    return conv


def is_bn(module: Optional[nn.Module]) -> bool:
    return isinstance(module, _BatchNorm)


def fuse_modules(model: nn.Module) -> nn.Module:
    """Call ``fuse()`` on every sub-module of ``model`` that defines one, innermost first, and
    return ``model`` in eval mode.

    The contract of every mmevo ``fuse()``: fold what is exact for inference into the module's
    own convolutions, in place, and return the module. A module whose ``fuse()`` handles its
    children itself sets ``_fuses_children = True``; its children are then left to it.
    """
    model.eval()
    handled = set()

    def visit(module: nn.Module) -> None:
        if getattr(module, '_fuses_children', False):
            module.fuse()
            handled.add(id(module))
            return
        for child in module.children():
            visit(child)
        if module is not model and callable(getattr(module, 'fuse', None)) \
                and id(module) not in handled:
            module.fuse()
            handled.add(id(module))

    for child in model.children():
        visit(child)
    return model

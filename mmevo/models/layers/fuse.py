# Copyright (c) mmevo contributors. All rights reserved.
"""Exact inference-time folding of BatchNorm and per-channel scales into 1x1/kxk convolutions.

Each fold is an algebraic identity of eval-mode BatchNorm (a per-channel affine map); results
differ from the unfolded model only by float rounding.
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


def _with_bias(conv: nn.Conv2d) -> nn.Conv2d:
    if conv.bias is None:
        conv.bias = nn.Parameter(torch.zeros(conv.out_channels, dtype=conv.weight.dtype,
                                             device=conv.weight.device))
    return conv


@torch.no_grad()
def fold_bn_after_conv(conv: nn.Conv2d, bn: _BatchNorm) -> nn.Conv2d:
    """``bn(conv(x))`` == ``conv'(x)``; updates ``conv`` in place and returns it."""
    scale, shift = bn_affine(bn)
    conv = _with_bias(conv)
    conv.weight.mul_(scale.view(-1, 1, 1, 1))
    conv.bias.mul_(scale).add_(shift)
    return conv


@torch.no_grad()
def fold_bn_before_conv(bn: _BatchNorm, conv: nn.Conv2d) -> nn.Conv2d:
    """``conv(bn(x))`` == ``conv'(x)`` for an unpadded, ungrouped 1x1 convolution."""
    if conv.kernel_size != (1, 1) or conv.groups != 1:
        raise ValueError('only a dense 1x1 convolution can absorb the BatchNorm before it')
    scale, shift = bn_affine(bn)
    conv = _with_bias(conv)
    conv.bias.add_(conv.weight.flatten(1) @ shift)
    conv.weight.mul_(scale.view(1, -1, 1, 1))
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

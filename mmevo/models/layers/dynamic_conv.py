# Copyright (c) mmevo contributors. All rights reserved.
"""Depth-wise convolutions whose kernels are predicted from the input.

* :func:`per_sample_dwconv2d`: a depth-wise convolution with one set of kernels per sample,
  computed as a single grouped convolution over ``B * C`` groups (the batch folded into the
  channels), not as a loop over the samples; in CPU training with the faster depth-wise
  backward of :func:`~.depthwise.dwconv2d`.
* :class:`DynamicDWConv2d`: the dynamic depth-wise convolution of dynamic DWNet
  (`Han et al., ICLR 2022 <https://arxiv.org/abs/2106.04263>`_): per-sample kernels generated
  from the globally pooled input.
* :class:`InhomogeneousDWConv2d` and :func:`per_pixel_dwconv2d`: the inhomogeneous variant
  (per-sample *and* per-position kernels, shared by groups of channels). The official model has
  only a CUDA (cupy) kernel; this one is written with ``F.unfold`` and runs on any device.
"""
from typing import Optional, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules.utils import _pair

from .depthwise import dwconv2d
from .fast_path import batch_stats_norm, exporting, fused_inference
from .norm import build_norm

_IntPair = Union[int, Tuple[int, int]]


def _channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def per_sample_dwconv2d(x: torch.Tensor,
                        weight: torch.Tensor,
                        bias: Optional[torch.Tensor] = None,
                        stride: _IntPair = 1,
                        padding: _IntPair = 0,
                        dilation: _IntPair = 1,
                        act: Optional[str] = None) -> torch.Tensor:
    """Depth-wise convolution of every sample with its own kernels.

    ``out[b, c] = act(conv(x[b, c], weight[b, c]) + bias[c])`` (or ``bias[b, c]``), zero
    padding. The samples are the groups of one grouped convolution over ``(1, B * C, H, W)``;
    a channels-last input is laid out as channels-last planes (one copy in, one out: the
    depth-wise kernels are faster on that layout) and the output is channels-last too. While
    exporting (``torch.export`` / ONNX, where a group count is a constant and would fix the batch
    size) it is ``F.unfold`` patches times the kernels instead.

    Args:
        x (Tensor): Input, ``(B, C, H, W)``.
        weight (Tensor): Kernels, ``(B, C, kh, kw)``.
        bias (Tensor, optional): ``(C, )`` shared by the samples, or ``(B, C)``.
        stride, padding, dilation (int | tuple): As in ``F.conv2d``.
        act (str, optional): ``'relu'`` after the convolution (a oneDNN post-op in fused
            inference). Defaults to None.

    Returns:
        Tensor: ``(B, C, H', W')``.
    """
    if x.dim() != 4 or weight.dim() != 4 or weight.shape[:2] != x.shape[:2]:
        raise ValueError(f'per_sample_dwconv2d expects x (B, C, H, W) and weight (B, C, kh, kw) '
                         f'with the same B and C, got {tuple(x.shape)} and '
                         f'{tuple(weight.shape)}')
    if act not in (None, 'relu'):
        raise ValueError(f"per_sample_dwconv2d: act must be None or 'relu', got {act!r}")
    B, C, H, W = x.shape
    if bias is not None:
        if bias.shape not in ((C, ), (B, C)):
            raise ValueError(f'per_sample_dwconv2d: bias must be ({C},) or ({B}, {C}), got '
                             f'{tuple(bias.shape)}')
        bias = bias.expand(B, C)
    stride, padding, dilation = _pair(stride), _pair(padding), _pair(dilation)
    if exporting():
        # ONNX Conv's group count is a constant, so B * C groups would fix the batch size
        out = _per_sample_dwconv2d_unfold(x, weight, bias, stride, padding, dilation)
        return out if act is None else F.relu(out)
    if bias is not None:
        bias = bias.reshape(B * C)
    channels_last = _channels_last(x)
    if channels_last:  # (B, H, W, C) memory -> (H, W, B, C): channels-last (1, B * C, H, W)
        planes = x.permute(2, 3, 0, 1).contiguous().view(1, H, W, B * C).permute(0, 3, 1, 2)
    else:
        planes = x.reshape(1, B * C, H, W)
    kernels = weight.reshape(B * C, 1, *weight.shape[2:])
    if act == 'relu' and fused_inference(x):
        out = torch.ops.mkldnn._convolution_pointwise(planes, kernels, bias, list(padding),
                                                      list(stride), list(dilation), B * C,
                                                      'relu', [], None)
        act = None
    elif stride == (1, 1):  # with the fast backward when training on CPU
        out = dwconv2d(planes, kernels, bias, padding, dilation)
    else:
        out = F.conv2d(planes, kernels, bias, stride, padding, dilation, B * C)
    Ho, Wo = out.shape[2:]
    if channels_last:
        out = out.permute(0, 2, 3, 1).reshape(Ho, Wo, B, C).permute(2, 3, 0, 1)
        out = out.contiguous(memory_format=torch.channels_last)
    else:
        out = out.reshape(B, C, Ho, Wo)
    return out if act is None else F.relu(out)


def _per_sample_dwconv2d_unfold(x: torch.Tensor, weight: torch.Tensor,
                                 bias: Optional[torch.Tensor], stride: Tuple[int, int],
                                 padding: Tuple[int, int],
                                 dilation: Tuple[int, int]) -> torch.Tensor:
    """:func:`per_sample_dwconv2d` without the batch in any constant: ``F.unfold`` patches
    times the per-sample kernels, summed over the ``kh * kw`` taps (used while exporting)."""
    B, C, H, W = x.shape
    kh, kw = weight.shape[2:]
    Ho = (H + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    Wo = (W + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    cols = F.unfold(x, (kh, kw), dilation, padding, stride).view(B, C, kh * kw, Ho * Wo)
    out = (cols * weight.reshape(B, C, kh * kw, 1)).sum(2).view(B, C, Ho, Wo)
    return out if bias is None else out + bias.reshape(B, C, 1, 1)


class DynamicDWConv2d(nn.Module):
    """Depth-wise convolution with kernels generated per sample from the pooled input.

    ``w = conv2(ReLU(norm(conv1(mean_hw(x)))))`` gives ``C * k * k`` values per sample, viewed as
    ``(C, k, k)`` kernels (channel-major, then kernel row and column); the output is
    ``per_sample_dwconv2d(x, w) + bias`` with zero padding ``k // 2`` (dynamic DWNet's
    ``DynamicDWConv``, `arXiv:2106.04263 <https://arxiv.org/abs/2106.04263>`_).

    The norm of the kernel generator normalises ``(B, C / reduction, 1, 1)`` pooled maps: a
    BatchNorm in training mode needs more than one sample, so a batch of 1 in training is an
    error (unless it is a SyncBN synchronised across several processes). Use batches of at least
    2 per process, eval mode, or ``norm_eval``.

    Args:
        channels (int): Input (= output) channels.
        kernel_size (int): Kernel size ``k`` (odd).
        reduction (int): Hidden channels of the generator are ``channels // reduction``.
            Defaults to 4.
        bias (bool): A learnable per-channel bias shared by the samples (zero-initialised).
            Defaults to True.
        norm_cfg (dict): Norm of the generator. Defaults to ``dict(type='BN')``.
    """

    def __init__(self,
                 channels: int,
                 kernel_size: int,
                 reduction: int = 4,
                 bias: bool = True,
                 norm_cfg: dict = dict(type='BN')):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f'DynamicDWConv2d: kernel_size must be odd, got {kernel_size}')
        if channels // reduction < 1:
            raise ValueError(f'DynamicDWConv2d: channels={channels} // reduction={reduction} '
                             f'leaves no hidden channel')
        self.channels = channels
        self.kernel_size = kernel_size
        hidden = channels // reduction
        self.conv1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.norm = build_norm(norm_cfg, hidden)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(hidden, channels * kernel_size * kernel_size, 1)
        self.bias = nn.Parameter(torch.zeros(channels)) if bias else None

    def kernels(self, x: torch.Tensor) -> torch.Tensor:
        """The per-sample kernels ``(B, C, k, k)`` for input ``x``."""
        if x.shape[0] == 1 and batch_stats_norm(self.norm):
            raise ValueError(
                f'{type(self).__name__}: the kernel generator normalises pooled (B, C, 1, 1) '
                f'maps with BatchNorm, which needs more than one sample in training; got a '
                f'batch of 1. Train with batches of at least 2 per process (or SyncBN across '
                f'processes), or use eval mode / norm_eval=True')
        pooled = F.adaptive_avg_pool2d(x, 1)
        w = self.conv2(self.act(self.norm(self.conv1(pooled))))
        return w.reshape(x.shape[0], self.channels, self.kernel_size, self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return per_sample_dwconv2d(x, self.kernels(x), self.bias, padding=self.kernel_size // 2)

    def extra_repr(self) -> str:
        return f'{self.channels}, kernel_size={self.kernel_size}'


def per_pixel_dwconv2d(x: torch.Tensor, weight: torch.Tensor, padding: _IntPair = 0,
                       dilation: _IntPair = 1) -> torch.Tensor:
    """Stride-1 depth-wise convolution with a kernel per sample, position and channel group.

    ``out[b, c, i, j] = sum_{u, v} weight[b, g(c), u, v, i, j] * x[b, c, i + u*d - p,
    j + v*d - p]`` (zero padding), where the ``G`` kernel groups each cover ``C / G``
    consecutive channels: ``g(c) = c // (C / G)``.

    Args:
        x (Tensor): Input, ``(B, C, H, W)``.
        weight (Tensor): Kernels, ``(B, G, kh, kw, H', W')`` with ``H', W'`` the output size.
        padding, dilation (int | tuple): As in ``F.conv2d``.

    Returns:
        Tensor: ``(B, C, H', W')``.
    """
    if x.dim() != 4 or weight.dim() != 6 or weight.shape[0] != x.shape[0] \
            or x.shape[1] % weight.shape[1]:
        raise ValueError(f'per_pixel_dwconv2d expects x (B, C, H, W) and weight '
                         f'(B, G, kh, kw, H, W) with G dividing C, got {tuple(x.shape)} and '
                         f'{tuple(weight.shape)}')
    B, C = x.shape[:2]
    G, kh, kw, Ho, Wo = weight.shape[1:]
    cols = F.unfold(x, (kh, kw), _pair(dilation), _pair(padding), 1)
    if cols.shape[-1] != Ho * Wo:
        raise ValueError(f'per_pixel_dwconv2d: the kernels are for {Ho}x{Wo} outputs but the '
                         f'input gives {cols.shape[-1]} positions')
    cols = cols.view(B, G, C // G, kh * kw, Ho * Wo)
    out = torch.einsum('bgckl,bgkl->bgcl', cols, weight.reshape(B, G, kh * kw, Ho * Wo))
    return out.reshape(B, C, Ho, Wo)


class InhomogeneousDWConv2d(nn.Module):
    """Inhomogeneous dynamic depth-wise convolution (i-dynamic DWNet).

    A kernel per sample and position, predicted by ``conv2(ReLU(norm(conv1(x))))`` (1x1
    convolutions with bias, hidden ``channels // reduction``), ``G = channels /
    group_channels`` kernels per position, each shared by ``group_channels`` consecutive
    channels (the official ``inhomo_heads``); zero padding ``k // 2``, no bias. Computed by
    :func:`per_pixel_dwconv2d` (``F.unfold``: memory ``k * k`` times the input), on any device.

    Args:
        channels (int): Input (= output) channels.
        kernel_size (int): Kernel size ``k`` (odd).
        group_channels (int): Channels sharing one kernel; must divide ``channels``.
        reduction (int): Generator hidden channels are ``channels // reduction``. Defaults to 4.
        norm_cfg (dict): Norm of the generator. Defaults to ``dict(type='BN')``.
    """

    def __init__(self,
                 channels: int,
                 kernel_size: int,
                 group_channels: int,
                 reduction: int = 4,
                 norm_cfg: dict = dict(type='BN')):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f'InhomogeneousDWConv2d: kernel_size must be odd, got {kernel_size}')
        if group_channels < 1 or channels % group_channels:
            raise ValueError(f'InhomogeneousDWConv2d: group_channels={group_channels} must '
                             f'divide channels={channels}')
        if channels // reduction < 1:
            raise ValueError(f'InhomogeneousDWConv2d: channels={channels} // '
                             f'reduction={reduction} leaves no hidden channel')
        self.channels = channels
        self.kernel_size = kernel_size
        self.groups = channels // group_channels
        hidden = channels // reduction
        self.conv1 = nn.Conv2d(channels, hidden, 1)
        self.norm = build_norm(norm_cfg, hidden)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(hidden, kernel_size * kernel_size * self.groups, 1)

    def kernels(self, x: torch.Tensor) -> torch.Tensor:
        """The kernels ``(B, G, k, k, H, W)`` for input ``x``."""
        w = self.conv2(self.act(self.norm(self.conv1(x))))
        k = self.kernel_size
        return w.reshape(x.shape[0], self.groups, k, k, *x.shape[2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return per_pixel_dwconv2d(x, self.kernels(x), padding=self.kernel_size // 2)

    def extra_repr(self) -> str:
        return f'{self.channels}, kernel_size={self.kernel_size}, groups={self.groups}'

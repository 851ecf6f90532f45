# Copyright (c) mmevo contributors. All rights reserved.
"""Global circular convolution (GCC) of `ParC-Net / EdgeFormer <https://arxiv.org/abs/2203.03952>`_
(Zhang et al., ECCV 2022).

A GCC is a depth-wise convolution whose kernel spans a whole column (``'H'``) or row (``'W'``) of
the map and wraps around its border, so every output sees the entire column or row:

    ``y[i] = sum_{t < L} k[t] * x[(i + t) mod L]``   (per channel, along one axis of length L)

The kernels are *meta kernels* of a fixed length ``M``: at another map size they are resized to
the map's length (bilinear, ``align_corners=True``, as the official instance kernels), or, with
``resize=False``, the map must have exactly that length. Axial position embeddings are resized
the same way. Each axis is resized to its own length, so non-square maps work (the official code
uses the height for both axes and needs square inputs).

* :func:`circular_conv` computes the formula above. The plain formulation is the official one:
  the map concatenated with its first ``L - 1`` rows (or columns), then a valid depth-wise
  convolution. The fast form multiplies by the circulant matrix of each channel's kernel instead
  (one batched GEMM over channels, ``L`` multiply-adds per output as before, without the
  concatenated copy): on CPU a depth-wise convolution with an ``L``-tap kernel runs at a small
  fraction of the GEMM rate (forward 2x faster at L = 16 and 32 on 2 cores). Modules take it in
  fused inference (:func:`~.fast_path.fast_route`); in training the backward through the batched
  GEMM was not faster than the convolution's, so training keeps the plain form.
* :class:`GlobalCircularConv` (one axis, a meta kernel and an optional bias) and
  :class:`AxialPositionEmbedding` are the ParC operator's parts; GCC-ConvNeXt builds its ParC
  operator from them.
* :class:`GCCBlock` is EdgeFormer's meta-former block (``gcc_ca``): the channels are halved, the
  first half goes through position embedding, BatchNorm, GCC along H, position embedding, GCC
  along W, the second half the same with the axes swapped; then a BatchNorm-Hardswish FFN whose
  output is re-weighted by channel attention (squeeze-excitation).
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath

from .fast_path import fast_route, fused_inference
from .inference_conv import bn_conv_act, conv_bn_act
from .lean_ops import bn_conv

AXES = ('H', 'W')


def _axis_dim(axis: str) -> int:
    if axis not in AXES:
        raise ValueError(f"axis must be 'H' or 'W', got {axis!r}")
    return 2 if axis == 'H' else 3


def resize_meta(meta: torch.Tensor, length: int, axis: str) -> torch.Tensor:
    """A meta kernel ``(C, 1, M, 1)`` / ``(C, 1, 1, M)`` or a position embedding ``(1, C, M, 1)``
    / ``(1, C, 1, M)`` resized to ``length`` along ``axis`` (bilinear, ``align_corners=True``, as
    the official instance kernels); returned as it is when ``M == length``."""
    dim = _axis_dim(axis)
    if meta.shape[dim] == length:
        return meta
    size = (length, 1) if axis == 'H' else (1, length)
    return F.interpolate(meta, size, mode='bilinear', align_corners=True)


def circulant(kernel: torch.Tensor) -> torch.Tensor:
    """The circulant matrices ``(C, L, L)`` of kernels ``(C, L)``: ``m[c, i, j] =
    kernel[c, (j - i) mod L]``, so that ``m[c] @ x`` is the circular correlation of ``x`` with
    ``kernel[c]`` (differentiable; built from views of one doubled copy of the kernels)."""
    length = kernel.shape[1]
    doubled = torch.cat((kernel, kernel), dim=1)
    # row i is doubled[L - i : 2L - i]; unfold's rows 1..L reversed
    return doubled.unfold(1, length, 1)[:, 1:length + 1].flip(1)


def _circular_conv_plain(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                         dim: int) -> torch.Tensor:
    wrapped = torch.cat((x, x.narrow(dim, 0, x.shape[dim] - 1)), dim=dim)
    return F.conv2d(wrapped, weight, bias, groups=x.shape[1])


def _circular_conv_gemm(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                        dim: int) -> torch.Tensor:
    batch, channels = x.shape[:2]
    length = x.shape[dim]
    other = 5 - dim  # the axis that is not convolved
    cols = x.permute(1, dim, 0, other).reshape(channels, length, -1)
    y = torch.bmm(circulant(weight.reshape(channels, length)), cols)
    y = y.view(channels, length, batch, x.shape[other])
    y = y.permute(2, 0, 1, 3) if dim == 2 else y.permute(2, 0, 3, 1)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def circular_conv(x: torch.Tensor,
                  weight: torch.Tensor,
                  bias: Optional[torch.Tensor] = None,
                  fast: bool = False) -> torch.Tensor:
    """Depth-wise circular convolution along one axis with a kernel as long as that axis.

    Args:
        x (Tensor): ``(N, C, H, W)`` map.
        weight (Tensor): ``(C, 1, H, 1)`` (along H) or ``(C, 1, 1, W)`` (along W) kernels.
        bias (Tensor, optional): ``(C, )``.
        fast (bool): Multiply by circulant matrices (one batched GEMM) instead of the plain
            concatenation + convolution. Same values up to float rounding. Defaults to False.

    Raises:
        ValueError: the kernel does not have the ``(C, 1, L, 1)`` / ``(C, 1, 1, L)`` shape of
            the map's channels and length.
    """
    channels, height, width = x.shape[1:]
    if weight.shape == (channels, 1, height, 1):
        dim = 2
    elif weight.shape == (channels, 1, 1, width):
        dim = 3
    else:
        raise ValueError(f'circular_conv needs a kernel of shape ({channels}, 1, {height}, 1) '
                         f'(along H) or ({channels}, 1, 1, {width}) (along W) for a map of '
                         f'shape {tuple(x.shape)}, got {tuple(weight.shape)}')
    impl = _circular_conv_gemm if fast else _circular_conv_plain
    return impl(x, weight, bias, dim)


class GlobalCircularConv(nn.Module):
    """Depth-wise global circular convolution along one axis (a ParC operator without its
    position embedding).

    Args:
        channels (int): Channels (one kernel each).
        axis (str): ``'H'`` (along the height) or ``'W'``.
        kernel_size (int): Length ``M`` of the meta kernel.
        bias (bool): Add a learnable bias. Defaults to False.
        resize (bool): Resize the kernel to the map's length along ``axis`` (bilinear,
            ``align_corners=True``); False: the length must be ``kernel_size``. Defaults to True.
    """

    def __init__(self,
                 channels: int,
                 axis: str,
                 kernel_size: int,
                 bias: bool = False,
                 resize: bool = True):
        super().__init__()
        self.dim = _axis_dim(axis)
        self.axis = axis
        self.kernel_size = kernel_size
        self.resize = resize
        shape = (channels, 1, kernel_size, 1) if axis == 'H' else (channels, 1, 1, kernel_size)
        self.weight = nn.Parameter(torch.empty(shape))
        self.bias = nn.Parameter(torch.empty(channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``nn.Conv2d``'s default initialisation (the official meta kernels are taken from
        throw-away depth-wise convolutions)."""
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)
        if self.bias is not None:
            bound = self.kernel_size**-0.5
            nn.init.uniform_(self.bias, -bound, bound)

    def instance_kernel(self, length: int) -> torch.Tensor:
        """The kernel for a map of ``length`` along the axis."""
        if not self.resize and length != self.kernel_size:
            raise ValueError(f'{type(self).__name__}(axis={self.axis!r}) has a fixed kernel of '
                             f'length {self.kernel_size} (resize=False) but the map has length '
                             f'{length} along {self.axis}; use an input that gives '
                             f'{self.kernel_size}, or resize=True')
        return resize_meta(self.weight, length, self.axis)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.instance_kernel(x.shape[self.dim])
        # the GEMM form in inference: its autograd backward is not faster than the convolution's
        fast = fast_route(self, x) and fused_inference(x)
        return circular_conv(x, weight, self.bias, fast=fast)

    def extra_repr(self) -> str:
        return (f'{self.weight.shape[0]}, axis={self.axis!r}, kernel_size={self.kernel_size}, '
                f'bias={self.bias is not None}, resize={self.resize}')


class AxialPositionEmbedding(nn.Module):
    """A learnable embedding along one axis, broadcast over the other and added to the map.

    Args:
        channels (int): Channels.
        axis (str): ``'H'`` (one vector per row index) or ``'W'``.
        size (int): Length ``M`` of the stored embedding.
        resize (bool): Resize to the map's length (bilinear, ``align_corners=True``); False: the
            length must be ``size``. Defaults to True.
        init_std (float, optional): Truncated-normal initialisation with this std; None: standard
            normal (EdgeFormer). Defaults to None.
    """

    def __init__(self,
                 channels: int,
                 axis: str,
                 size: int,
                 resize: bool = True,
                 init_std: Optional[float] = None):
        super().__init__()
        self.dim = _axis_dim(axis)
        self.axis = axis
        self.size = size
        self.resize = resize
        shape = (1, channels, size, 1) if axis == 'H' else (1, channels, 1, size)
        self.weight = nn.Parameter(torch.randn(shape))
        if init_std is not None:
            nn.init.trunc_normal_(self.weight, std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[self.dim]
        if not self.resize and length != self.size:
            raise ValueError(f'{type(self).__name__}(axis={self.axis!r}) has a fixed length of '
                             f'{self.size} (resize=False) but the map has length {length} '
                             f'along {self.axis}')
        return x + resize_meta(self.weight, length, self.axis)

    def extra_repr(self) -> str:
        return f'{self.weight.shape[1]}, axis={self.axis!r}, size={self.size}'


class ChannelAttention(nn.Module):
    """Squeeze-excitation with BatchNorms: ``x * HSigmoid(BN(fc2(HSwish(BN(fc1(GAP(x)))))))``
    (EdgeFormer's ``CA_layer``; bias-free 1x1 convolutions, ``channels // reduction`` hidden).

    Args:
        channels (int): Channels of ``x``.
        reduction (int): Hidden channels are ``channels // reduction``. Defaults to 16.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = channels // reduction
        if hidden < 1:
            raise ValueError(f'ChannelAttention needs channels >= reduction, got '
                             f'channels={channels}, reduction={reduction}')
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.norm1 = nn.BatchNorm2d(hidden)
        self.act = nn.Hardswish()
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.gate(self.norm2(self.fc2(self.act(self.norm1(self.fc1(s))))))
        return x * s


class GCCBlock(nn.Module):
    """EdgeFormer's GCC block (``gcc_ca``): global circular convolutions in both axes, then an
    FFN re-weighted by channel attention.

    With ``x = [x1, x2]`` (channel halves of ``d`` channels each)::

        c1 = GCC_W(PE_2W(GCC_H(BN_1(PE_1H(x1)))))
        c2 = GCC_H(PE_2H(GCC_W(BN_2(PE_1W(x2)))))
        z = [x1 + c1, x2 + c2]
        out = z + CA(f),  f = drop(fc2(drop(HSwish(fc1(BN(z))))))

    Note the axes of the second position embeddings: the first half, convolved along H first,
    gets the W embedding before its W convolution (and vice versa), as in the official code.

    Args:
        channels (int): Channels ``2d`` (even).
        kernel_size (int): Meta-kernel (and position-embedding) length ``M``: the map size at
            the native input resolution.
        ffn_channels (int): Hidden channels of the FFN.
        use_pe (bool): Add the position embeddings. Defaults to True.
        bias (bool): Biases in the circular convolutions. Defaults to False (EdgeFormer's
            released configs never set them).
        resize (bool): Resize kernels and embeddings to the map (per axis); False: the map must
            be ``kernel_size`` square. Defaults to True.
        ffn_drop (float): Dropout after the FFN activation. Defaults to 0.
        drop (float): Dropout on the FFN output. Defaults to 0.1 (official).
        reduction (int): Channel-attention reduction. Defaults to 16.
        drop_path (float): Stochastic depth on both residual branches (not in the official
            model). Defaults to 0.
    """

    def __init__(self,
                 channels: int,
                 kernel_size: int,
                 ffn_channels: int,
                 use_pe: bool = True,
                 bias: bool = False,
                 resize: bool = True,
                 ffn_drop: float = 0.,
                 drop: float = 0.1,
                 reduction: int = 16,
                 drop_path: float = 0.):
        super().__init__()
        if channels % 2:
            raise ValueError(f'GCCBlock needs an even number of channels (two halves), got '
                             f'{channels}')
        d = channels // 2
        self.channels = channels
        self.ffn_channels = ffn_channels

        def pe(axis):
            return AxialPositionEmbedding(d, axis, kernel_size, resize) if use_pe else None

        self.pe_1_h, self.pe_1_w, self.pe_2_h, self.pe_2_w = (pe(a) for a in 'HWHW')
        self.norm_1 = nn.BatchNorm2d(d)
        self.norm_2 = nn.BatchNorm2d(d)
        self.gcc_1_h, self.gcc_1_w, self.gcc_2_h, self.gcc_2_w = (
            GlobalCircularConv(d, a, kernel_size, bias, resize) for a in 'HWHW')
        self.ffn_norm = nn.BatchNorm2d(channels)
        self.fc1 = nn.Conv2d(channels, ffn_channels, 1)
        self.act = nn.Hardswish()
        self.ffn_drop = nn.Dropout(ffn_drop)
        self.fc2 = nn.Conv2d(ffn_channels, channels, 1)
        self.drop = nn.Dropout(drop)
        self.ca = ChannelAttention(channels, reduction)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    @staticmethod
    def _pe(pe: Optional[nn.Module], x: torch.Tensor) -> torch.Tensor:
        return x if pe is None else pe(x)

    def spatial(self, x: torch.Tensor) -> torch.Tensor:
        """``[c1, c2]``: both halves after their global circular convolutions."""
        x1, x2 = x.chunk(2, dim=1)
        c1 = self.norm_1(self._pe(self.pe_1_h, x1))
        c1 = self.gcc_2_w(self._pe(self.pe_2_w, self.gcc_1_h(c1)))
        c2 = self.norm_2(self._pe(self.pe_1_w, x2))
        c2 = self.gcc_2_h(self._pe(self.pe_2_h, self.gcc_1_w(c2)))
        return torch.cat((c1, c2), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast_route(self, x):
            return self.forward_fast(x)
        z = x + self.drop_path(self.spatial(x))
        f = self.drop(self.fc2(self.ffn_drop(self.act(self.fc1(self.ffn_norm(z))))))
        return z + self.drop_path(self.ca(f))

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: the FFN's BatchNorm folded into ``fc1`` with Hardswish as a oneDNN
        post-op. Training: ``fc1(BN(z))`` keeps only ``z`` for backward (the normalised map is
        recomputed). The circular convolutions take their own fast route."""
        z = x + self.drop_path(self.spatial(x))
        if fused_inference(x):
            f = conv_bn_act(bn_conv_act(z, self.ffn_norm, self.fc1, 'hardswish'), self.fc2)
        else:
            f = self.drop(self.fc2(self.ffn_drop(self.act(bn_conv(z, self.ffn_norm, self.fc1)))))
        return z + self.drop_path(self.ca(f))

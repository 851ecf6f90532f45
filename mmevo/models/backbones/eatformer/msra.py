# Copyright (c) mmevo contributors. All rights reserved.
import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath

from ...layers.fast_path import fast_route, fused_inference
from ...layers.folding import fold_bn_after_conv, is_bn
from ...layers.inference_conv import conv_bn_act
from ...layers.lean_ops import act_conv, bn_conv
from ...layers.norm import build_norm
from ...layers.residual import add_residual
from .interleave import interleave_channels
from .lean_nodes import dwconv_silu_mix

MSRA_MODES = ('sum', 'cat')


class MSRA(nn.Module):
    """Multi-Scale Region Aggregation: EATFormer's local, multi-dilation convolution sub-layer.

    ``y = proj(mix_i(SiLU(conv_i(norm(x)))))`` with one ``kernel_size`` convolution per dilation,
    depth-wise at stride 1 and dense at stride 2. With several dilations the branches are mixed
    either by a softmax-weighted mean (``mode='sum'``; ``weighted=False``: plain mean) or
    concatenated channel-interleaved (``mode='cat'``; weighted by the softmax first when
    ``weighted=True``). With ``skip=True`` the output is ``shortcut(x) + drop_path(y)``, where the
    shortcut is the identity at stride 1 and ``BN(conv1x1(avgpool2x2(x)))`` at stride 2.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Kernel of the branch convolutions. Defaults to 3.
        stride (int): 1 or 2. Defaults to 1.
        dilations (Sequence[int]): One branch per dilation. Defaults to ``(1, )``.
        mode (str): ``'sum'`` or ``'cat'``. Defaults to ``'sum'``.
        weighted (bool): Learnable softmax weights over the branches. Defaults to True.
        with_norm (bool): Pre-norm. Defaults to True.
        skip (bool): Residual shortcut. Defaults to True.
        conv_groups (int): Groups of the stride-1 branch convolutions; -1 means depth-wise.
        drop_path (float): Stochastic depth rate of the residual. Defaults to 0.
        norm_cfg (dict): Norm layers. Defaults to BN with eps 1e-6.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 3,
                 stride: int = 1,
                 dilations: Sequence[int] = (1, ),
                 mode: str = 'sum',
                 weighted: bool = True,
                 with_norm: bool = True,
                 skip: bool = True,
                 conv_groups: int = -1,
                 drop_path: float = 0.,
                 norm_cfg: dict = dict(type='BN', eps=1e-6)):
        super().__init__()
        if mode not in MSRA_MODES:
            raise ValueError(f'MSRA mode must be one of {MSRA_MODES}, got {mode!r}')
        if stride not in (1, 2):
            raise ValueError(f'MSRA stride must be 1 or 2, got {stride}')
        self.mode = mode
        self.num_branches = len(dilations)
        self.norm = build_norm(norm_cfg, in_channels) if with_norm else nn.Identity()
        groups = (in_channels if conv_groups == -1 else conv_groups) if stride == 1 else 1
        self.depthwise = stride == 1 and groups == in_channels == out_channels
        self.convs = nn.ModuleList(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding=math.ceil(((kernel_size - 1) * d + 1 - stride) / 2),
                dilation=d,
                groups=groups) for d in dilations)
        self.alphas = nn.Parameter(torch.full((self.num_branches, ), 1e-3)) \
            if weighted and self.num_branches > 1 else None
        mixed = out_channels * self.num_branches if mode == 'cat' else out_channels
        self.proj = nn.Conv2d(mixed, out_channels, 1, bias=False)
        self.skip = skip
        if skip and stride == 2:
            self.shortcut = nn.Sequential()
            self.shortcut.add_module(
                'pool', nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False))
            self.shortcut.add_module('conv', nn.Conv2d(in_channels, out_channels, 1, bias=False))
            self.shortcut.add_module('norm', build_norm(norm_cfg, out_channels))
        else:
            self.shortcut = nn.Identity()
        self.drop_path = DropPath(drop_path) if skip and drop_path > 0 else nn.Identity()

    def _sum_weights(self, h: torch.Tensor) -> torch.Tensor:
        """Branch weights of the 'sum' mode: ``softmax(alphas) / n`` (or ``1 / n``)."""
        n = self.num_branches
        weights = self.alphas.softmax(-1) if self.alphas is not None else h.new_ones(n)
        return weights / n

    def mix(self, h: torch.Tensor) -> torch.Tensor:
        """The SiLU branches, mixed (before ``proj``)."""
        branches = [F.silu(conv(h)) for conv in self.convs]
        if self.num_branches == 1:
            return branches[0]
        if self.mode == 'cat':
            if self.alphas is not None:
                weights = self.alphas.softmax(-1)
                branches = [b * weights[i] for i, b in enumerate(branches)]
            return interleave_channels(branches)
        weights = self._sum_weights(h)
        return sum(b * weights[i] for i, b in enumerate(branches))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast_route(self, x):
            return self.forward_fast(x)
        y = self.proj(self.mix(self.norm(x)))
        return self.shortcut(x) + self.drop_path(y) if self.skip else y

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` through the fast routes (:mod:`mmevo.models.layers.fast_path`)."""
        if fused_inference(x):
            # SiLU as a oneDNN post-op, the residual added in place, the shortcut's BN folded
            shortcut = None
            if self.skip:
                shortcut = x if isinstance(self.shortcut, nn.Identity) else conv_bn_act(
                    self.shortcut.pool(x), self.shortcut.conv, self.shortcut.norm)
            return conv_bn_act(self._mix_inference(self.norm(x)), self.proj, residual=shortcut)
        if self.depthwise and (self.mode == 'sum' or self.num_branches == 1):
            # norm + branches + mix + proj as one node that keeps only x when training
            y = dwconv_silu_mix(x, self.convs, self._sum_weights(x), self.proj, self.norm)
        elif self.num_branches == 1:
            y = act_conv(bn_conv(x, self.norm, self.convs[0]), 'silu', self.proj, inplace=True)
        else:
            y = self.proj(self.mix(self.norm(x)))
        if not self.skip:
            return y
        return add_residual(self.shortcut(x), y, self.drop_path)

    def _mix_inference(self, h: torch.Tensor) -> torch.Tensor:
        """:meth:`mix` with SiLU as a oneDNN post-op and the weighted mean in place."""
        branches = [conv_bn_act(h, conv, act='silu') for conv in self.convs]
        if self.num_branches == 1:
            return branches[0]
        if self.mode == 'cat':
            if self.alphas is not None:
                weights = self.alphas.softmax(-1)
                branches = [b.mul_(weights[i]) for i, b in enumerate(branches)]
            return interleave_channels(branches)
        weights = self._sum_weights(h)
        y = branches[0].mul_(weights[0])
        for i in range(1, self.num_branches):
            y = y.addcmul_(branches[i], weights[i])
        return y

    @torch.no_grad()
    def fuse(self) -> 'MSRA':
        """Fold the stride-2 shortcut's BatchNorm into its conv (exact; inference only)."""
        if isinstance(self.shortcut, nn.Sequential) and is_bn(self.shortcut.norm):
            fold_bn_after_conv(self.shortcut.conv, self.shortcut.norm)
            self.shortcut.norm = nn.Identity()
        return self

# Copyright (c) mmevo contributors. All rights reserved.
import math
from collections import OrderedDict
from typing import Sequence, Tuple

import torch
import torch.nn as nn

from .norm import build_norm


class SimplePyramid(nn.Module):
    """Four maps at strides ``s/4, s/2, s, 2s`` from stride-``s`` maps of a columnar backbone.

    The rescaling of ViTDet's simple feature pyramid (`Li et al., ECCV 2022
    <https://arxiv.org/abs/2203.16527>`_), for plain ViT-like backbones under mmdet's FPN or
    mmseg's UPerHead (which then project every level to the neck width):

    * ``x4``: ``ConvTranspose2d(C, C/2, 2, 2)``, norm, GELU, ``ConvTranspose2d(C/2, C/4, 2, 2)``;
    * ``x2``: ``ConvTranspose2d(C, C/2, 2, 2)``;
    * ``x1``: identity;
    * ``x0.5``: ``MaxPool2d(2, 2)`` (``ceil_mode``: an odd map keeps its last row and column).

    Output channels are ``(C/4, C/2, C, C)``. Level ``k`` rescales the ``k``-th input map, or the
    only one: one map gives ViTDet's pyramid from the last block, four give the block-tap pyramid
    of mmseg's BEiT/MAE configs (``Feature2Pyramid``).

    Args:
        in_channels (int): Channels ``C`` of the input maps (a multiple of 4).
        in_stride (int): Stride ``s`` of the input maps. Defaults to 16.
        norm_cfg (dict): Norm between the two transposed convolutions. Defaults to a channel
            LayerNorm (eps 1e-6), as ViTDet.
    """
    scales = (4, 2, 1, 0.5)

    def __init__(self,
                 in_channels: int,
                 in_stride: int = 16,
                 norm_cfg: dict = dict(type='LN2d', eps=1e-6)):
        super().__init__()
        if in_channels % 4 or in_channels < 4:
            raise ValueError(f'SimplePyramid needs in_channels divisible by 4 (C/4 channels at '
                             f'stride s/4), got {in_channels}')
        if in_stride % 4:
            raise ValueError(f'SimplePyramid needs an input stride divisible by 4, got '
                             f'{in_stride}')
        c = in_channels
        self.levels = nn.ModuleList([
            nn.Sequential(
                OrderedDict(
                    up1=nn.ConvTranspose2d(c, c // 2, 2, 2),
                    norm=build_norm(norm_cfg, c // 2),
                    act=nn.GELU(),
                    up2=nn.ConvTranspose2d(c // 2, c // 4, 2, 2))),
            nn.ConvTranspose2d(c, c // 2, 2, 2),
            nn.Identity(),
            nn.MaxPool2d(2, 2, ceil_mode=True),
        ])
        self.out_channels = (c // 4, c // 2, c, c)
        self.out_strides = (in_stride // 4, in_stride // 2, in_stride, in_stride * 2)

    def forward(self, maps: Sequence[torch.Tensor],
                size: Tuple[int, int]) -> Tuple[torch.Tensor, ...]:
        """Rescale ``maps`` (one map, or one per level) of an input of ``size = (H, W)``.

        Every level is cropped to ``ceil(H / stride) x ceil(W / stride)``: what is left of an
        input that was padded to a multiple of the input stride.
        """
        if len(maps) not in (1, len(self.levels)):
            raise ValueError(f'SimplePyramid takes 1 or {len(self.levels)} maps, got {len(maps)}')
        if len(maps) == 1:
            maps = list(maps) * len(self.levels)
        outs = []
        for level, x, stride in zip(self.levels, maps, self.out_strides):
            y = level(x)
            outs.append(y[..., :math.ceil(size[0] / stride), :math.ceil(size[1] / stride)])
        return tuple(outs)

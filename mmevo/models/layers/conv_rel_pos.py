# Copyright (c) mmevo contributors. All rights reserved.
"""Convolutional relative position encoding (CRPE), from `CoaT <https://arxiv.org/abs/2104.06399>`_.

Factorised (linear) attention has no attention map to add a relative position bias to; CRPE
adds ``q * DWConv(v)`` instead, a depth-wise convolution of the values whose kernel size may
differ between groups of heads. GroupMixFormer uses it beside its linear attention.
"""
from typing import Dict

import torch
import torch.nn as nn

from .depthwise import dwconv

#: CoaT's (and GroupMixFormer's) windows: kernel size -> heads, for 8 heads.
DEFAULT_CRPE_WINDOW = {3: 2, 5: 3, 7: 3}


class ConvRelPosEnc(nn.Module):
    """``q * DWConv(v)`` on maps whose channels are heads of ``head_dim`` channels each.

    Heads are taken in order: with ``window={3: 2, 5: 3, 7: 3}`` the first 2 heads are convolved
    with 3x3 kernels, the next 3 with 5x5 and the last 3 with 7x7 (zero padding, bias).

    Args:
        head_dim (int): Channels per head.
        window (dict): Odd kernel size -> number of heads using it, in channel order.
            Defaults to :data:`DEFAULT_CRPE_WINDOW`.
    """

    def __init__(self, head_dim: int, window: Dict[int, int] = DEFAULT_CRPE_WINDOW):
        super().__init__()
        if not window or any(k < 1 or k % 2 == 0 or n < 1 for k, n in window.items()):
            raise ValueError(f'window must map odd kernel sizes to positive head counts, got '
                             f'{window!r}')
        self.head_dim = head_dim
        self.num_heads = sum(window.values())
        self.splits = [n * head_dim for n in window.values()]
        self.convs = nn.ModuleList(
            nn.Conv2d(c, c, k, padding=k // 2, groups=c) for k, c in zip(window, self.splits))

    def forward(self, q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``q``, ``v``: ``(B, num_heads * head_dim, H, W)`` maps (heads major on channels)."""
        conv_v = torch.cat(
            [dwconv(part, conv) for part, conv in zip(v.split(self.splits, dim=1), self.convs)],
            dim=1)
        return q * conv_v

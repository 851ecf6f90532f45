# Copyright (c) mmevo contributors. All rights reserved.
"""Residual addition with stochastic depth in one pass, and channel interleaving."""
from typing import Sequence

import torch
import torch.nn as nn


def add_residual(x: torch.Tensor, y: torch.Tensor, drop_path: nn.Module) -> torch.Tensor:
    """``x + drop_path(y)`` where ``drop_path`` is mmcv's ``DropPath`` or ``nn.Identity``.

    While training, the per-sample keep mask (scaled by ``1 / keep_prob``) multiplies ``y``
    inside one ``addcmul`` instead of ``DropPath``'s separate division and multiplication.
    """
    drop_prob = getattr(drop_path, 'drop_prob', 0.)
    if not drop_path.training or drop_prob == 0:
        return x + y
    keep_prob = 1 - drop_prob
    mask = y.new_empty((y.shape[0], ) + (1, ) * (y.dim() - 1)).bernoulli_(keep_prob)
    return torch.addcmul(x, y, mask.div_(keep_prob))


def interleave_channels(xs: Sequence[torch.Tensor]) -> torch.Tensor:
    """``[a, b]`` -> ``[a_0, b_0, a_1, b_1, ...]`` along channels (EATFormer's branch order).

    One copy; the result is channels-last in memory, like mmevo's maps.
    """
    y = torch.stack([x.permute(0, 2, 3, 1) for x in xs], dim=-1)
    return y.flatten(3).permute(0, 3, 1, 2)


def interleave_add(x: torch.Tensor, ys: Sequence[torch.Tensor]) -> torch.Tensor:
    """``x + [y0_0, y1_0, ..., y0_1, y1_1, ...]`` (``ys`` interleaved channel-wise), no autograd.

    Each ``y`` is added straight into its strided channel slice of the output: no stacked copy.
    """
    n = len(ys)
    out = torch.empty_like(x)
    x_parts, out_parts = x.unflatten(1, (-1, n)), out.unflatten(1, (-1, n))
    for i, y in enumerate(ys):
        torch.add(x_parts[:, :, i], y, out=out_parts[:, :, i])
    return out

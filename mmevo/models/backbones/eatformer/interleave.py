# Copyright (c) mmevo contributors. All rights reserved.
"""Channel interleaving of EATFormer's branch outputs (GLI's split ops, MSRA's 'cat' mode)."""
from typing import Sequence

import torch


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

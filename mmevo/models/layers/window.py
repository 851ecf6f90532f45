# Copyright (c) mmevo contributors. All rights reserved.
"""Grid ("dilated") window partition used by EATFormer's MSA and MD-MSA.

Unlike Swin's contiguous windows, window ``(a, b)`` of a map cut into an ``n1 x n2`` grid of windows
of size ``wh x ww`` holds the pixels ``(i * n1 + a, j * n2 + b)``: every window spans the whole
(padded) map with a stride. Maps are zero-padded on the right/bottom to a multiple of the window.
Windows are stacked on the batch axis in ``(batch, a, b)`` order.
"""
from typing import NamedTuple, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

WindowSize = Union[int, Sequence[int]]


class GridWindows(NamedTuple):
    """How a ``(B, C, H, W)`` map was cut into grid windows."""
    n1: int  # windows along H
    n2: int  # windows along W
    wh: int  # window height
    ww: int  # window width
    height: int  # H before padding
    width: int  # W before padding


def resolve_window_size(window_size: WindowSize, height: int,
                        width: int) -> Tuple[int, int]:
    """``int`` or ``(wh, ww)``; a value <= 0 means one global window on that axis."""
    if isinstance(window_size, int):
        wh = ww = window_size
    else:
        wh, ww = window_size
    return (height if wh <= 0 else wh, width if ww <= 0 else ww)


def grid_window_layout(window_size: WindowSize, height: int,
                       width: int) -> GridWindows:
    wh, ww = resolve_window_size(window_size, height, width)
    return GridWindows(-(-height // wh), -(-width // ww), wh, ww, height, width)


def pad_to_windows(x: torch.Tensor, grid: GridWindows) -> torch.Tensor:
    """Zero-pad right/bottom so that the map is ``(n1 * wh, n2 * ww)``."""
    pad_b = grid.n1 * grid.wh - grid.height
    pad_r = grid.n2 * grid.ww - grid.width
    if pad_b or pad_r:
        x = F.pad(x, (0, pad_r, 0, pad_b))
    return x


def grid_window_partition(x: torch.Tensor,
                          window_size: WindowSize) -> Tuple[torch.Tensor, GridWindows]:
    """``(B, C, H, W)`` -> ``(B * n1 * n2, C, wh, ww)`` grid windows (one copy at most).

    The windows are channels-last in memory (as mmevo's maps are), whatever the layout of ``x``.
    """
    B, C, H, W = x.shape
    grid = grid_window_layout(window_size, H, W)
    x = pad_to_windows(x, grid)
    if grid.n1 == grid.n2 == 1:
        return x, grid
    x = x.permute(0, 2, 3, 1).reshape(B, grid.wh, grid.n1, grid.ww, grid.n2, C)
    x = x.permute(0, 2, 4, 1, 3, 5).reshape(B * grid.n1 * grid.n2, grid.wh, grid.ww, C)
    return x.permute(0, 3, 1, 2), grid


def grid_window_heads(x: torch.Tensor, grid: GridWindows, num_parts: int,
                      num_heads: int) -> torch.Tensor:
    """Cut a padded ``(B, P*heads*dh, Hp, Wp)`` map into per-head window tokens in one copy
    (for a channels-last ``x``).

    Channels are ordered ``(part, head, dim_head)`` as in the official qkv projections. Returns
    ``(P, B * n1 * n2, heads, wh * ww, dh)``.
    """
    B, C = x.shape[:2]
    dh = C // (num_parts * num_heads)
    x = x.permute(0, 2, 3, 1).reshape(B, grid.wh, grid.n1, grid.ww, grid.n2, num_parts,
                                      num_heads, dh)
    x = x.permute(5, 0, 2, 4, 6, 1, 3, 7)
    return x.reshape(num_parts, B * grid.n1 * grid.n2, num_heads, grid.wh * grid.ww, dh)


def grid_window_merge_heads(x: torch.Tensor, grid: GridWindows) -> torch.Tensor:
    """Inverse of the window/head split: ``(Bw, heads, N, dh)`` -> ``(B, heads*dh, H, W)``.

    Merges heads head-major and puts the windows back on the grid in one copy, channels-last;
    the padding is cropped by a view.
    """
    Bw, heads, _, dh = x.shape
    B = Bw // (grid.n1 * grid.n2)
    x = x.reshape(B, grid.n1, grid.n2, heads, grid.wh, grid.ww, dh).permute(0, 4, 1, 5, 2, 3, 6)
    x = x.reshape(B, grid.wh * grid.n1, grid.ww * grid.n2, heads * dh).permute(0, 3, 1, 2)
    if x.shape[-2] != grid.height or x.shape[-1] != grid.width:
        x = x[:, :, :grid.height, :grid.width]
    return x

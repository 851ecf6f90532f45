# Copyright (c) mmevo contributors. All rights reserved.
import pytest
import torch

from mmevo.models.layers import (grid_window_heads, grid_window_layout, grid_window_merge_heads,
                                 grid_window_partition, interleave_channels)


@pytest.mark.parametrize('size,window', [((14, 14), 7), ((15, 15), 7), ((10, 12), (3, 5)),
                                         ((5, 6), -1), ((9, 13), (-1, 4))])
def test_grid_partition_is_strided(size, window):
    H, W = size
    x = torch.arange(2 * 3 * H * W, dtype=torch.float32).view(2, 3, H, W)
    windows, grid = grid_window_partition(x, window)
    assert windows.shape == (2 * grid.n1 * grid.n2, 3, grid.wh, grid.ww)
    padded = torch.zeros(2, 3, grid.n1 * grid.wh, grid.n2 * grid.ww)
    padded[:, :, :H, :W] = x
    for b in range(2):
        for a in range(grid.n1):
            for c in range(grid.n2):
                win = windows[(b * grid.n1 + a) * grid.n2 + c]
                # window (a, c) holds pixels (i * n1 + a, j * n2 + c)
                torch.testing.assert_close(win, padded[b, :, a::grid.n1, c::grid.n2])


@pytest.mark.parametrize('size,window', [((15, 17), 7), ((14, 14), 7), ((6, 9), (2, 3))])
def test_head_split_and_merge_round_trip(size, window):
    H, W = size
    heads, dh = 2, 3
    x = torch.randn(2, 3 * heads * dh, H, W)
    grid = grid_window_layout(window, H, W)
    from mmevo.models.layers.window import pad_to_windows
    parts = grid_window_heads(pad_to_windows(x, grid), grid, 3, heads)
    assert parts.shape == (3, 2 * grid.n1 * grid.n2, heads, grid.wh * grid.ww, dh)
    for p in range(3):
        merged = grid_window_merge_heads(parts[p], grid)
        torch.testing.assert_close(merged, x[:, p * heads * dh:(p + 1) * heads * dh])


def test_interleave():
    a = torch.tensor([[1., 2.]]).view(1, 2, 1, 1)
    b = torch.tensor([[10., 20.]]).view(1, 2, 1, 1)
    assert interleave_channels([a, b]).flatten().tolist() == [1., 10., 2., 20.]

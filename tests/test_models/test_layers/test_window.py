# Copyright (c) mmevo contributors. All rights reserved.
import pytest
import torch

from mmevo.models.backbones.eatformer.interleave import interleave_channels
from mmevo.models.layers import (
    grid_window_heads,
    grid_window_layout,
    grid_window_merge_heads,
    grid_window_partition,
)
from mmevo.models.layers.deform import groups_to_batch
from mmevo.models.layers.window import pad_to_windows

CL = torch.channels_last


@pytest.mark.parametrize('size,window', [((14, 14), 7), ((15, 15), 7), ((10, 12), (3, 5)),
                                         ((5, 6), -1), ((9, 13), (-1, 4))])
def test_grid_partition_is_strided(size, window):
    H, W = size
    x = torch.arange(2 * 3 * H * W, dtype=torch.float32).view(2, 3, H, W)
    windows, grid = grid_window_partition(x, window)
    assert windows.shape == (2 * grid.n1 * grid.n2, 3, grid.wh, grid.ww)
    if grid.n1 * grid.n2 > 1:  # one copy, into channels-last memory, from either layout
        assert windows.is_contiguous(memory_format=CL)
        cl_windows, _ = grid_window_partition(x.contiguous(memory_format=CL), window)
        assert cl_windows.is_contiguous(memory_format=CL)
        torch.testing.assert_close(cl_windows, windows, rtol=0, atol=0)
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
    parts = grid_window_heads(pad_to_windows(x, grid), grid, 3, heads)
    assert parts.shape == (3, 2 * grid.n1 * grid.n2, heads, grid.wh * grid.ww, dh)
    cl_parts = grid_window_heads(pad_to_windows(x.contiguous(memory_format=CL), grid), grid, 3,
                                 heads)
    torch.testing.assert_close(cl_parts, parts, rtol=0, atol=0)
    for p in range(3):
        merged = grid_window_merge_heads(parts[p], grid)
        torch.testing.assert_close(merged, x[:, p * heads * dh:(p + 1) * heads * dh])
        # merged channels-last; only the crop of the padding makes it a strided view
        padded = (grid.n1 * grid.wh, grid.n2 * grid.ww) != (H, W)
        assert merged.is_contiguous(memory_format=CL) != padded


def test_interleave():
    a = torch.tensor([[1., 2.]]).view(1, 2, 1, 1)
    b = torch.tensor([[10., 20.]]).view(1, 2, 1, 1)
    assert interleave_channels([a, b]).flatten().tolist() == [1., 10., 2., 20.]
    xs = [torch.randn(2, 4, 3, 5).contiguous(memory_format=CL) for _ in range(3)]
    y = interleave_channels(xs)
    assert y.shape == (2, 12, 3, 5) and y.is_contiguous(memory_format=CL)
    for i in range(3):
        torch.testing.assert_close(y[:, i::3], xs[i], rtol=0, atol=0)


@pytest.mark.parametrize('fmt', [torch.contiguous_format, CL])
def test_groups_to_batch(fmt):
    x = torch.randn(3, 8, 5, 6).contiguous(memory_format=fmt)
    out = groups_to_batch(x, 2)
    if fmt == CL:
        assert out.is_contiguous(memory_format=CL)
    else:  # a view of x
        assert out.data_ptr() == x.data_ptr() and out.is_contiguous()
    # group-major channel split: group 0 = channels 0..3, stacked after the batch index
    torch.testing.assert_close(out, x.reshape(6, 4, 5, 6), rtol=0, atol=0)
    assert groups_to_batch(x, 1) is x

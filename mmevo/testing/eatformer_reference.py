# Copyright (c) mmevo contributors. All rights reserved.
"""A straightforward EATFormer forward on the weights of an :class:`mmevo.models.EATFormer`.

It follows the paper's equations one step at a time, the way the official code does: explicit
``softmax(q kᵀ) v`` attention, every window op padding, cutting windows with a contiguous copy,
running each projection per window and pasting back, branch outputs stacked before they are
mixed. It is the baseline of ``tools/analysis_tools/benchmark.py --reference`` (speed ratios of
the fast path against the same model) and a second, independent formulation in the tests.
"""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmevo.models.backbones.eatformer import (
    GLI,
    MDMSA,
    MSRA,
    ConvOp,
    DeformConvOp,
    EATBlock,
    EATFormer,
    WindowMSA,
)
from mmevo.models.layers import ConvFFN
from mmevo.models.layers.window import resolve_window_size


def _windows(x: torch.Tensor, window_size):
    B, C, H, W = x.shape
    wh, ww = resolve_window_size(window_size, H, W)
    pad_b, pad_r = (wh - H % wh) % wh, (ww - W % ww) % ww
    x = F.pad(x, (0, pad_r, 0, pad_b))
    n1, n2 = (H + pad_b) // wh, (W + pad_r) // ww
    x = x.view(B, C, wh, n1, ww, n2).permute(0, 3, 5, 1, 2, 4).contiguous()
    return x.view(B * n1 * n2, C, wh, ww), (B, n1, n2, H, W)


def _unwindows(x: torch.Tensor, meta) -> torch.Tensor:
    B, n1, n2, H, W = meta
    _, C, wh, ww = x.shape
    x = x.view(B, n1, n2, C, wh, ww).permute(0, 3, 4, 1, 5, 2).contiguous()
    return x.view(B, C, wh * n1, ww * n2)[:, :, :H, :W].contiguous()


def _heads(x: torch.Tensor, parts: int, heads: int) -> torch.Tensor:
    B, C, H, W = x.shape
    x = x.view(B, parts, heads, C // (parts * heads), H * W).permute(1, 0, 2, 4, 3)
    return x.contiguous()


def _attend(q, k, v) -> torch.Tensor:
    attn = (q @ k.transpose(-2, -1)) * q.shape[-1]**-0.5
    return attn.softmax(dim=-1) @ v


def _merge(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    B, heads, _, dh = x.shape
    return x.permute(0, 1, 3, 2).contiguous().view(B, heads * dh, h, w)


def msa(m: WindowMSA, x: torch.Tensor) -> torch.Tensor:
    win, meta = _windows(x, m.window_size)
    q, k, v = _heads(m.qkv(win), 3, m.num_heads)
    out = m.proj(_merge(_attend(q, k, v), *win.shape[-2:]))
    return _unwindows(m.gamma.view(1, -1, 1, 1) * out, meta)


def mdmsa(m: MDMSA, x: torch.Tensor) -> torch.Tensor:
    win, meta = _windows(x, m.window_size)
    B, C, h, w = win.shape
    g = m.deform_groups
    q = m.q(win)
    om = m.offset(q.view(B, g, C // g, h, w).reshape(B * g, C // g, h, w).contiguous())
    off = om[:, :2].tanh() * torch.tensor([1.0 / h, 1.0 / w]).view(1, 2, 1, 1) * 2
    ref_y, ref_x = torch.meshgrid(torch.linspace(0.5, h - 0.5, h) / h * 2 - 1,
                                  torch.linspace(0.5, w - 0.5, w) / w * 2 - 1, indexing='ij')
    pos = off.permute(0, 2, 3, 1) + torch.stack((ref_y, ref_x), -1)
    sampled = F.grid_sample(win.reshape(B * g, C // g, h, w), pos[..., (1, 0)],
                            mode='bilinear', align_corners=True)
    sampled = sampled * om[:, 2:3].sigmoid().sigmoid()
    k, v = _heads(m.kv(sampled.view(B, C, h, w)), 2, m.num_heads)
    q = _heads(q, 1, m.num_heads)[0]
    out = m.proj(_merge(_attend(q, k, v), h, w))
    return _unwindows(m.gamma.view(1, -1, 1, 1) * out, meta)


def gli_op(op: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(op, WindowMSA):
        return msa(op, x)
    if isinstance(op, MDMSA):
        return mdmsa(op, x)
    if isinstance(op, ConvOp):
        return op.pwconv(F.silu(op.norm(op.dwconv(x))))
    if isinstance(op, DeformConvOp):
        return op.pwconv(F.silu(op.deform(x)))
    raise TypeError(type(op))


def gli(m: GLI, x: torch.Tensor) -> torch.Tensor:
    h = m.norm(x)
    if m.merge == 'single':
        y = gli_op(m.ops[0], h)
    else:
        xs = torch.split(h, m.dims, dim=1) if m.split else [h] * len(m.ops)
        outs = [gli_op(op, xi) for op, xi in zip(m.ops, xs)]
        if m.alphas is not None:
            a = m.alphas.softmax(-1)
            outs = [o * a[i] for i, o in enumerate(outs)]
        if m.merge == 'mean':
            y = torch.stack(outs, -1).mean(-1)
        elif m.merge == 'cat':
            y = torch.cat(outs, 1)
        else:
            y = torch.stack(outs, -1).permute(0, 1, 4, 2, 3).flatten(1, 2).contiguous()
    return x + m.drop_path(y)


def msra(m: MSRA, x: torch.Tensor) -> torch.Tensor:
    h = m.norm(x)
    branches = [F.silu(conv(h)) for conv in m.convs]
    if len(branches) == 1:
        y = branches[0]
    else:
        if m.alphas is not None:
            a = m.alphas.softmax(-1)
            branches = [b * a[i] for i, b in enumerate(branches)]
        stacked = torch.stack(branches, -1)
        y = stacked.permute(0, 1, 4, 2, 3).flatten(1, 2).contiguous() if m.mode == 'cat' \
            else stacked.mean(-1)
    y = m.proj(y)
    return m.shortcut(x) + m.drop_path(y) if m.skip else y


def ffn(m: ConvFFN, x: torch.Tensor) -> torch.Tensor:
    y = m.fc2(m.act(m.fc1(m.norm(x))))
    return x + m.drop_path(m.gamma.view(1, -1, 1, 1) * y)


def block(m: EATBlock, x: torch.Tensor) -> torch.Tensor:
    return ffn(m.ffn, gli(m.gli, msra(m.msra, x)))


def reference_forward(model: EATFormer, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
    """The outputs of ``model(x)``, computed the straightforward way."""
    for layer in model.stem:
        x = msra(layer, x)
    outs = []
    for i, stage in enumerate(model.stages):
        for blk in stage:
            x = block(blk, x)
        if i in model.out_indices:
            outs.append(x)
    return tuple(outs)


class ReferenceEATFormer(nn.Module):
    """Wraps an :class:`EATFormer` so that its forward is :func:`reference_forward`."""

    def __init__(self, model: EATFormer):
        super().__init__()
        # The official layout: NCHW-contiguous weights and maps.
        model.channels_last = False
        self.model = model.to(memory_format=torch.contiguous_format)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return reference_forward(self.model, x)

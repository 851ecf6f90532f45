# Copyright (c) mmevo contributors. All rights reserved.
"""EATFormer's attention ops on NCHW maps: windowed MSA, MD-MSA and the TRHead's MCA.

Attention runs on :func:`mmevo.models.layers.attention.dot_product_attention` (SDPA). All
projections are 1x1 convolutions (as in the official model, and faster than ``nn.Linear`` on
CPU); their channels are ordered ``(q|k|v, head, dim_head)``.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...layers.attention import dot_product_attention, num_heads_of
from ...layers.deform import SAMPLERS, groups_to_batch, modulated_deform_sample
from ...layers.depthwise import dwconv
from ...layers.fast_path import exact_gelu, fast_route, fused_inference
from ...layers.folding import fold_bn_after_conv, is_bn, scale_conv_output
from ...layers.inference_conv import conv_bn_act
from ...layers.lean_ops import scaled_conv_params
from ...layers.norm import build_norm
from ...layers.window import (
    GridWindows,
    WindowSize,
    grid_window_heads,
    grid_window_layout,
    grid_window_merge_heads,
    grid_window_partition,
    pad_to_windows,
)


class _LayerScaled(nn.Module):
    """An attention op whose output ``proj(...)`` is multiplied by a layer scale ``gamma``."""
    proj: nn.Conv2d
    gamma: torch.Tensor

    proj_drop: nn.Dropout

    def project(self, out: torch.Tensor,
                scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``scale * gamma * proj_drop(proj(out))`` (``scale``: GLI's op weight)."""
        gamma = self.gamma
        if scale is not None:
            gamma = scale if gamma is None else gamma * scale
        if gamma is None:
            return self.proj_drop(self.proj(out))
        if (self.proj_drop.p == 0 or not self.training) and fast_route(self, out):
            # gamma scales the projection's weights instead of its output, so autograd need
            # not keep the projected map for gamma's gradient.
            return F.conv2d(out, *scaled_conv_params(self.proj, gamma))
        return self.proj_drop(self.proj(out)) * gamma.view(-1, 1, 1)

    @torch.no_grad()
    def fuse(self, scale=1.) -> '_LayerScaled':
        """Fold ``gamma`` (and an outer ``scale``) into ``proj`` for inference."""
        gamma = 1. if self.gamma is None else self.gamma
        scale_conv_output(self.proj, gamma * torch.as_tensor(scale))
        self.gamma = None
        return self


class WindowMSA(_LayerScaled):
    """Multi-head self-attention in EATFormer's grid windows, with layer scale (the 'msa' op).

    Args:
        dim (int): Channels.
        dim_head (int): Channels per head.
        window_size (int | tuple[int, int]): Window size (``<= 0``: one global window).
        qkv_bias (bool): Bias of the qkv projection. Defaults to True.
        attn_drop (float): Attention dropout. Defaults to 0.
        proj_drop (float): Output dropout. Defaults to 0.
        layer_scale_init_value (float): Initial layer scale. Defaults to 1e-4.
    """

    def __init__(self,
                 dim: int,
                 dim_head: int,
                 window_size: WindowSize,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 layer_scale_init_value: float = 1e-4):
        super().__init__()
        self.num_heads = num_heads_of(dim, dim_head)
        self.window_size = window_size
        self.attn_drop = attn_drop
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=qkv_bias)
        self.proj = nn.Conv2d(dim, dim, 1)
        self.proj_drop = nn.Dropout(proj_drop)
        self.gamma = nn.Parameter(torch.full((dim, ), layer_scale_init_value))

    def forward(self, x: torch.Tensor, scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``scale * gamma * MSA(x)`` per window (``scale``: GLI's op weight)."""
        grid = grid_window_layout(self.window_size, *x.shape[-2:])
        # The qkv projection is point-wise, so it runs once on the padded map and the window
        # split + head split is a single copy.
        qkv = self.qkv(pad_to_windows(x, grid))
        q, k, v = grid_window_heads(qkv, grid, 3, self.num_heads)
        out = dot_product_attention(q, k, v, self.attn_drop if self.training else 0.)
        return self.project(grid_window_merge_heads(out, grid), scale)


class MDMSA(_LayerScaled):
    """Modulated Deformable MSA in EATFormer's grid windows, with layer scale (the 'mdmsa' op).

    Per window, queries come from the input; keys and values from the input re-sampled at learned
    offsets and modulated. Offsets and modulation are predicted from the queries, per group of
    ``dim // deform_groups`` channels with one shared offset network:
    ``offset = tanh(o) * 2 / (h, w)``, ``modulation = sigmoid(sigmoid(m))`` (the official model
    applies the sigmoid twice); reference points are pixel centres in the align_corners=False
    convention, sampled with ``align_corners=True``, exactly as the official implementation does.

    Args:
        dim (int): Channels.
        dim_head (int): Channels per head.
        window_size (int | tuple[int, int]): Window size (``<= 0``: one global window).
        deform_groups (int): Offset groups. Defaults to 2.
        offset_kernel_size (int): Depth-wise kernel of the offset network. Defaults to 5.
        qkv_bias (bool): Bias of the q and kv projections (always True officially).
        attn_drop (float): Attention dropout. Defaults to 0.
        proj_drop (float): Output dropout. Defaults to 0.
        layer_scale_init_value (float): Initial layer scale. Defaults to 1e-4.
        sampler (str): ``'auto'`` (mmcv's op on CUDA when mmcv has CUDA ops, else grid_sample),
            ``'grid_sample'`` or ``'mmcv'`` (see :func:`modulated_deform_sample`).
        norm_cfg (dict): Norm of the offset network. Defaults to BN with eps 1e-6.
    """

    def __init__(self,
                 dim: int,
                 dim_head: int,
                 window_size: WindowSize,
                 deform_groups: int = 2,
                 offset_kernel_size: int = 5,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 layer_scale_init_value: float = 1e-4,
                 sampler: str = 'auto',
                 norm_cfg: dict = dict(type='BN', eps=1e-6)):
        super().__init__()
        self.num_heads = num_heads_of(dim, dim_head)
        if dim % deform_groups:
            raise ValueError(f'MD-MSA channels {dim} must be a multiple of deform_groups '
                             f'{deform_groups}')
        if sampler not in SAMPLERS:
            raise ValueError(f'sampler must be one of {SAMPLERS}, got {sampler!r}')
        self.window_size = window_size
        self.deform_groups = deform_groups
        self.attn_drop = attn_drop
        self.sampler = sampler
        group_dim = dim // deform_groups
        self.q = nn.Conv2d(dim, dim, 1, bias=qkv_bias)
        self.offset = nn.Sequential()
        self.offset.add_module(
            'dwconv',
            nn.Conv2d(group_dim, group_dim, offset_kernel_size, padding=offset_kernel_size // 2,
                      groups=group_dim))
        self.offset.add_module('norm', build_norm(norm_cfg, group_dim))
        self.offset.add_module('act', nn.GELU())
        self.offset.add_module('pwconv', nn.Conv2d(group_dim, 3, 1, bias=False))
        self.kv = nn.Conv2d(dim, dim * 2, 1, bias=qkv_bias)
        self.proj = nn.Conv2d(dim, dim, 1)
        self.proj_drop = nn.Dropout(proj_drop)
        self.gamma = nn.Parameter(torch.full((dim, ), layer_scale_init_value))

    @torch.no_grad()
    def fuse(self, scale=1.) -> 'MDMSA':
        super().fuse(scale)
        if is_bn(self.offset.norm):
            fold_bn_after_conv(self.offset.dwconv, self.offset.norm)
            self.offset.norm = nn.Identity()
        return self

    def sampling_grid(self, offset_modulation: torch.Tensor):
        """Sample points ``(Bw*g, h, w, 2)`` as (x, y) and modulation ``(Bw*g, 1, h, w)``.

        Computed in float32 (also under autocast): the offsets are fractions of a pixel.
        """
        om = offset_modulation.float()
        h, w = om.shape[-2:]
        off_y = om[:, 0].tanh().mul(1.0 / h).mul(2)
        off_x = om[:, 1].tanh().mul(1.0 / w).mul(2)
        ref_y = torch.linspace(0.5, h - 0.5, h, device=om.device).div(h).mul(2).sub(1)
        ref_x = torch.linspace(0.5, w - 0.5, w, device=om.device).div(w).mul(2).sub(1)
        grid = torch.stack((off_x + ref_x.view(1, 1, w), off_y + ref_y.view(1, h, 1)), dim=-1)
        modulation = om[:, 2:3].sigmoid().sigmoid()
        return grid, modulation

    def offsets(self, q: torch.Tensor) -> torch.Tensor:
        """The offset network on per-group queries ``(Bw*g, C/g, h, w)``."""
        if fused_inference(q) and exact_gelu(self.offset.act):
            q = conv_bn_act(q, self.offset.dwconv, self.offset.norm, 'gelu')
            return self.offset.pwconv(q)
        offset = self.offset
        return offset.pwconv(offset.act(offset.norm(dwconv(q, offset.dwconv))))

    def forward(self, x: torch.Tensor, scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``scale * gamma * MD-MSA(x)`` per window (``scale``: GLI's op weight)."""
        windows, grid = grid_window_partition(x, self.window_size)
        Bw, C, h, w = windows.shape
        g = self.deform_groups
        q = self.q(windows)
        pos, modulation = self.sampling_grid(self.offsets(groups_to_batch(q, g)))
        # Sampling stays in float32 under autocast, like the offsets.
        sampled = modulated_deform_sample(windows.float(), pos, modulation, g,
                                          self.sampler).to(windows.dtype)
        tokens = GridWindows(1, 1, h, w, h, w)  # every window's (head, token, dim) split
        q = grid_window_heads(q, tokens, 1, self.num_heads)[0]
        k, v = grid_window_heads(self.kv(sampled), tokens, 2, self.num_heads)
        out = dot_product_attention(q, k, v, self.attn_drop if self.training else 0.)
        return self.project(grid_window_merge_heads(out, grid), scale)


class MCA(nn.Module):
    """Multi-head cross-attention of a class token (query) over a feature map (keys, values).

    Used by EATFormer's task-related head (TRHead).

    Args:
        dim (int): Channels.
        dim_head (int): Channels per head.
        qkv_bias (bool): Bias of the q and kv projections. Defaults to True.
        attn_drop (float): Attention dropout. Defaults to 0.
        proj_drop (float): Output dropout. Defaults to 0.
    """

    def __init__(self,
                 dim: int,
                 dim_head: int,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.):
        super().__init__()
        self.num_heads = num_heads_of(dim, dim_head)
        self.attn_drop = attn_drop
        self.q = nn.Conv2d(dim, dim, 1, bias=qkv_bias)
        self.kv = nn.Conv2d(dim, dim * 2, 1, bias=qkv_bias)
        self.proj = nn.Conv2d(dim, dim, 1)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        Hq, Wq = query.shape[-2:]
        heads, dh = self.num_heads, C // self.num_heads
        q = self.q(query).reshape(B, heads, dh, Hq * Wq).transpose(-1, -2)
        k, v = self.kv(x).reshape(B, 2, heads, dh, H * W).transpose(-1, -2).unbind(1)
        out = dot_product_attention(q, k, v, self.attn_drop if self.training else 0.)
        out = out.transpose(-1, -2).reshape(B, C, Hq, Wq)
        return self.proj_drop(self.proj(out))

# Copyright (c) mmevo contributors. All rights reserved.
from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn.bricks import DropPath

from .fast_path import exact_gelu, fast_route, fused_inference
from .folding import fold_bn_before_conv, is_bn, scale_conv_output
from .inference_conv import bn_conv_act, conv_bn_act
from .lean_ops import act_conv, bn_conv
from .norm import build_norm
from .residual import add_residual


class ConvFFN(nn.Module):
    """Pre-norm feed-forward sub-layer on NCHW maps with layer scale and a residual.

    ``x + drop_path(gamma * fc2(GELU(fc1(norm(x)))))`` with 1x1 convolutions (EATFormer's FFN).

    Args:
        dim (int): Channels.
        mlp_ratio (float): Hidden channels are ``int(dim * mlp_ratio)``.
        drop (float): Dropout after the activation and after ``fc2``. Defaults to 0.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        layer_scale_init_value (float, optional): Initial layer scale; None: no layer scale
            (``gamma`` is None). Defaults to 1e-4.
        norm_cfg (dict): Pre-norm. Defaults to BN with eps 1e-6.
    """

    def __init__(self,
                 dim: int,
                 mlp_ratio: float = 4.,
                 drop: float = 0.,
                 drop_path: float = 0.,
                 layer_scale_init_value: Optional[float] = 1e-4,
                 norm_cfg: dict = dict(type='BN', eps=1e-6)):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm = build_norm(norm_cfg, dim)
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)
        self.gamma = None if layer_scale_init_value is None else nn.Parameter(
            torch.full((dim, ), layer_scale_init_value))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast_route(self, x):
            return self.forward_fast(x)
        y = self.drop(self.fc2(self.drop(self.act(self.fc1(self.norm(x))))))
        if self.gamma is not None:
            y = y * self.gamma.view(-1, 1, 1)
        return x + self.drop_path(y)

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: the pre-norm folded into ``fc1``, GELU as a oneDNN post-op, ``gamma``
        folded into ``fc2`` and the residual added in place. Training: neither the normalised
        map nor ``fc2``'s input or output is kept for backward (only ``fc1``'s output, from
        which GELU is recomputed); the residual and stochastic depth in one pass."""
        if fused_inference(x) and exact_gelu(self.act):
            h = bn_conv_act(x, self.norm, self.fc1, 'gelu')
            return conv_bn_act(h, self.fc2, scale=self.gamma, residual=x)
        h = bn_conv(x, self.norm, self.fc1)
        if self.drop.p == 0 and exact_gelu(self.act):
            y = act_conv(h, 'gelu', self.fc2, scale=self.gamma)
        else:
            y = self.drop(self.fc2(self.drop(self.act(h))))
            if self.gamma is not None:
                y = y * self.gamma.view(-1, 1, 1)
        return add_residual(x, y, self.drop_path)

    @torch.no_grad()
    def fuse(self) -> 'ConvFFN':
        """Fold the pre-norm into ``fc1`` and ``gamma`` into ``fc2`` (exact; inference only)."""
        if is_bn(self.norm):
            fold_bn_before_conv(self.norm, self.fc1)
            self.norm = nn.Identity()
        if self.gamma is not None:
            scale_conv_output(self.fc2, self.gamma)
            self.gamma = None
        return self

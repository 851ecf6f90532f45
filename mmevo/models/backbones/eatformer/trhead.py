# Copyright (c) mmevo contributors. All rights reserved.
import torch
import torch.nn as nn

from ...layers.norm import LayerNorm2d
from .attention import MCA


class TRHead(nn.Module):
    """One block of EATFormer's Task-Related Head: a class token attends to the feature map.

    ``t = t + MCA(LN(x), LN(t))``, then ``t = t + fc2(GELU(fc1(LN(t))))``, on ``(B, C, 1, 1)``
    tokens with channel LayerNorms (eps 1e-6).

    Args:
        dim (int): Channels.
        dim_head (int): Channels per head.
        mlp_ratio (float): MLP expansion. Defaults to 4.
        qkv_bias (bool): Bias of the q and kv projections. Defaults to True.
        drop (float): Dropout. Defaults to 0.
        attn_drop (float): Attention dropout. Defaults to 0.
        eps (float): LayerNorm epsilon. Defaults to 1e-6.
    """

    def __init__(self,
                 dim: int,
                 dim_head: int,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 drop: float = 0.,
                 attn_drop: float = 0.,
                 eps: float = 1e-6):
        super().__init__()
        self.norm_kv = LayerNorm2d(dim, eps=eps)
        self.norm_q = LayerNorm2d(dim, eps=eps)
        self.attn = MCA(dim, dim_head, qkv_bias, attn_drop, drop)
        self.norm_mlp = LayerNorm2d(dim, eps=eps)
        self.fc1 = nn.Conv2d(dim, int(dim * mlp_ratio), 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(int(dim * mlp_ratio), dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        token = token + self.attn(self.norm_kv(x), self.norm_q(token))
        y = self.drop(self.fc2(self.drop(self.act(self.fc1(self.norm_mlp(token))))))
        return token + y

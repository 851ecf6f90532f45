# Copyright (c) mmevo contributors. All rights reserved.
"""Multi-head attention on ``(B, N, C)`` token sequences: self-attention and the cross-attention
of a few query tokens (e.g. a class token) over a sequence.

Projections are ``nn.Linear``; their output channels are ordered ``(q|k|v, head, dim_head)``
as in timm and the official EAT/DeiT code, and the attention itself is
:func:`~.attention.dot_product_attention`.
"""
import torch
import torch.nn as nn
from einops import rearrange

from .attention import dot_product_attention


def _check_heads(dim: int, num_heads: int) -> int:
    if num_heads < 1 or dim % num_heads:
        raise ValueError(f'attention channels {dim} must be a positive multiple of '
                         f'num_heads={num_heads}')
    return num_heads


class SelfAttention(nn.Module):
    """Multi-head self-attention: ``proj(softmax(q k^T / sqrt(dh)) v)`` with ``q, k, v`` from one
    ``qkv`` projection.

    Args:
        dim (int): Token channels.
        num_heads (int): Heads; ``dim`` must be a multiple of it.
        qkv_bias (bool): Bias of the ``qkv`` projection. Defaults to True.
        attn_drop (float): Dropout on the attention weights (training only). Defaults to 0.
        proj_drop (float): Dropout after the output projection. Defaults to 0.
    """

    def __init__(self,
                 dim: int,
                 num_heads: int,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.):
        super().__init__()
        self.num_heads = _check_heads(dim, num_heads)
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), 'b n (t h d) -> t b h n d', t=3, h=self.num_heads)
        out = dot_product_attention(q, k, v, self.attn_drop if self.training else 0.)
        return self.proj_drop(self.proj(rearrange(out, 'b h n d -> b n (h d)')))


class CrossAttention(nn.Module):
    """Multi-head attention of query tokens over a context sequence.

    ``proj(softmax(q k^T / sqrt(dh)) v)`` with ``q = q_proj(query)`` and ``k, v`` from one ``kv``
    projection of ``context`` (CaiT's class attention when ``query`` is a class token).

    Args:
        dim (int): Token channels (query and context).
        num_heads (int): Heads; ``dim`` must be a multiple of it.
        qkv_bias (bool): Bias of the ``q`` and ``kv`` projections. Defaults to True.
        attn_drop (float): Dropout on the attention weights (training only). Defaults to 0.
        proj_drop (float): Dropout after the output projection. Defaults to 0.
    """

    def __init__(self,
                 dim: int,
                 num_heads: int,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.):
        super().__init__()
        self.num_heads = _check_heads(dim, num_heads)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        k, v = rearrange(self.kv(context), 'b n (t h d) -> t b h n d', t=2, h=self.num_heads)
        q = rearrange(self.q(query), 'b n (h d) -> b h n d', h=self.num_heads)
        out = dot_product_attention(q, k, v, self.attn_drop if self.training else 0.)
        return self.proj_drop(self.proj(rearrange(out, 'b h n d -> b n (h d)')))

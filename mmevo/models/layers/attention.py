# Copyright (c) mmevo contributors. All rights reserved.
"""Scaled dot-product attention for mmevo's attention layers.

:func:`dot_product_attention` is ``softmax(q k^T / sqrt(dh)) v`` on
``F.scaled_dot_product_attention``, with one measured exception for short CPU windows.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from .fast_path import short_cpu_attention


def num_heads_of(dim: int, dim_head: int) -> int:
    """``dim // dim_head``, with an error naming both unless it divides."""
    if dim % dim_head:
        raise ValueError(f'attention channels {dim} must be a multiple of dim_head {dim_head}')
    return dim // dim_head


def dot_product_attention(q: torch.Tensor,
                          k: torch.Tensor,
                          v: torch.Tensor,
                          dropout_p: float = 0.,
                          scale: Optional[float] = None) -> torch.Tensor:
    """``softmax(q k^T * scale) v`` over ``(..., N, dh)`` tokens (``scale``: ``dh ** -0.5``).

    ``F.scaled_dot_product_attention`` everywhere, except for short sequences on CPU without
    dropout (:func:`~.fast_path.short_cpu_attention`, e.g. EATFormer's 7x7 windows): there two
    batched matrix products and a softmax are ~1.6x faster in training and ~1.2x in inference
    than the CPU flash kernel, whose tiling targets long sequences (docs/benchmarks.md).
    """
    if dropout_p == 0 and short_cpu_attention(q, k):
        scale = q.shape[-1]**-0.5 if scale is None else scale
        attn = torch.matmul(q, k.transpose(-1, -2)).mul_(scale).softmax(-1)
        return torch.matmul(attn, v)
    return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, scale=scale)

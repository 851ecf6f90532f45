# Copyright (c) mmevo contributors. All rights reserved.
"""Group-Mix Attention (GMA), from `Advancing Vision Transformers with Group-Mix Attention
<https://arxiv.org/abs/2311.15157>`_ (GroupMixFormer).

GMA lets attention relate groups of neighbouring tokens as well as single tokens. The query, key
and value maps are each split into five channel segments; a *group aggregator* of kernel size
``k`` (a depth-wise ``k x k`` plus point-wise convolution) turns a segment into group proxies
(``k = 1``: the tokens themselves). Four segments (kernels 1, 3, 5, 7) form the attention
branches; the fifth segments of q, k and v together form a non-attention local branch. All
modules work on NCHW maps.

Fast routes (:mod:`.fast_path`): in inference q, k and v come from one batched matrix product
straight into the stacked layout the aggregators take (in training its backward is slower than
the linear layer's), and the aggregators' BatchNorms are folded into their point-wise
convolutions with Hardswish as a oneDNN post-op; in training each point-wise convolution, its
BatchNorm and Hardswish keep only the depth-wise output for the backward pass, and the keys'
softmax is recomputed in backward (:func:`softmax_context`). (Under tracing, e.g. FLOP
counting, the plain ops run: ``qkv`` as the linear layer it is.)
"""
from collections import OrderedDict
from typing import Dict, Sequence, Tuple

import torch
import torch.nn as nn
from einops import rearrange

from .conv_rel_pos import DEFAULT_CRPE_WINDOW, ConvRelPosEnc
from .depthwise import dwconv
from .fast_path import fast_route, fused_inference, lean_training
from .inference_conv import conv_bn_act
from .lean_ops import conv_bn_act_lean
from .norm import LayerNorm2d, build_norm


class _SoftmaxContext(torch.autograd.Function):
    """``softmax(k) @ v^T`` over the last axis, keeping ``k`` (not ``softmax(k)``)."""

    @staticmethod
    def forward(ctx, k, v):
        ctx.save_for_backward(k, v)
        return k.softmax(dim=-1) @ v.transpose(-2, -1)

    @staticmethod
    def backward(ctx, grad):
        k, v = ctx.saved_tensors
        s = k.softmax(dim=-1)
        grad_v = grad.transpose(-2, -1) @ s if ctx.needs_input_grad[1] else None
        grad_k = None
        if ctx.needs_input_grad[0]:
            grad_k = torch._softmax_backward_data(grad @ v, s, -1, s.dtype)
        return grad_k, grad_v


def softmax_context(k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``softmax(k, -1) @ v^T``; in training one autograd node that keeps ``k`` and recomputes
    the softmax in backward (``k``, a view of the proxies that stay for the other products,
    costs no memory; the softmax output would)."""
    if lean_training(k, v):
        return _SoftmaxContext.apply(k, v)
    return k.softmax(dim=-1) @ v.transpose(-2, -1)


class SeparableConv2d(nn.Sequential):
    """Depth-wise ``k x k`` then point-wise ``1 x 1`` convolution, both without bias.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Odd depth-wise kernel (padding ``k // 2``).
        stride (int): Stride of the depth-wise convolution. Defaults to 1.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__(
            OrderedDict(
                depthwise=nn.Conv2d(in_channels, in_channels, kernel_size, stride,
                                    kernel_size // 2, groups=in_channels, bias=False),
                pointwise=nn.Conv2d(in_channels, out_channels, 1, bias=False)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(dwconv(x, self.depthwise))


def separable_conv_bn_hardswish(x: torch.Tensor, conv: nn.Module, norm: nn.Module):
    """``hardswish(norm(conv(x)))`` for a :class:`SeparableConv2d` (or ``nn.Identity``) ``conv``:
    in inference the norm is folded into the point-wise convolution, Hardswish a post-op; in
    training the point-wise convolution, norm and Hardswish are one node that keeps only the
    depth-wise output (:func:`~.lean_ops.conv_bn_act_lean`)."""
    if not isinstance(conv, SeparableConv2d):
        return conv_bn_act_lean(x, None, norm, 'hardswish')
    if fused_inference(x):
        return conv_bn_act(conv.depthwise(x), conv.pointwise, norm, 'hardswish')
    return conv_bn_act_lean(dwconv(x, conv.depthwise), conv.pointwise, norm, 'hardswish')


class GroupAggregator(nn.Module):
    """GMA's group aggregators on the stacked q, k, v maps.

    The input holds q, k and v stacked on the batch axis, ``(3B, C, H, W)``, so that the q, k and
    v maps of a segment go through the same aggregator *and the same BatchNorm in one batch*: in
    training its statistics are those of q, k and v together, as in the official model. The
    channels are split into 5 segments of ``C // 5``:

    * segments 0-3 (attention branches): ``act(norm(aggregator_k(segment)))`` with
      ``kernel_sizes`` (1: identity), concatenated to the ``(3B, 4C/5, H, W)`` group proxies;
    * segment 4 of q, k and v concatenated on channels (local branch):
      ``act(LN(SeparableConv(3C/5 -> C/5)))``, ``(B, C/5, H, W)``.

    Args:
        dim (int): Channels ``C`` of q (and of k, v); a multiple of 5.
        kernel_sizes (Sequence[int]): Aggregator kernels of the 4 attention branches.
            Defaults to ``(1, 3, 5, 7)``.
        local_kernel_size (int): Aggregator kernel of the local branch. Defaults to 3.
        norm_cfg (dict): Norm of the attention branches. Defaults to BN (eps 1e-5).
    """

    def __init__(self,
                 dim: int,
                 kernel_sizes: Sequence[int] = (1, 3, 5, 7),
                 local_kernel_size: int = 3,
                 norm_cfg: dict = dict(type='BN')):
        super().__init__()
        if dim % 5:
            raise ValueError(f'GroupAggregator: dim={dim} must be a multiple of 5 (5 segments)')
        self.seg_dim = s = dim // 5
        self.aggregators = nn.ModuleList(
            nn.Identity() if k == 1 else SeparableConv2d(s, s, k) for k in kernel_sizes)
        self.norms = nn.ModuleList(build_norm(norm_cfg, s) for _ in kernel_sizes)
        self.act = nn.Hardswish()
        self.local_aggregator = SeparableConv2d(3 * s, s, local_kernel_size)
        self.local_norm = LayerNorm2d(s, eps=1e-5)

    def forward(self, qkv: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``qkv``: ``(3B, C, H, W)``, q, k and v stacked on the batch axis.

        Returns:
            tuple: the group proxies ``(3B, 4C/5, H, W)`` and the local branch
            ``(B, C/5, H, W)``.
        """
        if fast_route(self, qkv):
            return self.forward_fast(qkv)
        segments, local = self._split(qkv)
        proxies = torch.cat([
            self.act(norm(aggregator(seg)))
            for seg, aggregator, norm in zip(segments, self.aggregators, self.norms)
        ], dim=1)
        return proxies, self._local(local)

    def forward_fast(self, qkv: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward` through :func:`separable_conv_bn_hardswish`."""
        segments, local = self._split(qkv)
        proxies = torch.cat([
            separable_conv_bn_hardswish(seg, aggregator, norm)
            for seg, aggregator, norm in zip(segments, self.aggregators, self.norms)
        ], dim=1)
        return proxies, self._local(local)

    def _split(self, qkv: torch.Tensor):
        *segments, local = qkv.split(self.seg_dim, dim=1)
        if not torch.is_grad_enabled():
            # The first segment in NCHW memory: torch.cat takes its layout, so the proxies come
            # out channel-major (the attention's layout) in one pass. (In training the copy
            # would be kept for the backward pass instead of the view.)
            segments[0] = segments[0].contiguous()
        return segments, local

    def _local(self, local: torch.Tensor) -> torch.Tensor:
        # segment 4 of q | k | v (unflatten, not chunk: the batch stays symbolic in export)
        local = torch.cat(local.unflatten(0, (3, -1)).unbind(0), dim=1)
        return self.act(self.local_norm(self.local_aggregator(local)))


class GroupMixAttention(nn.Module):
    """Group-Mix Attention on ``(B, C, H, W)`` maps.

    ``qkv`` (a linear layer) gives q, k and v; :class:`GroupAggregator` turns each into group
    proxies (``4C/5`` channels) and computes the local branch (``C/5``). The proxies attend in
    ``num_heads`` heads with linear attention, ``q (softmax_N(k)^T v)`` (softmax over the tokens
    on the keys only), plus the convolutional relative position encoding ``q * DWConv(v)``::

        y = concat(scale * q (softmax_N(k)^T v) + q * DWConv(v), local)
        out = proj(y)

    ``scale`` is ``(C // num_heads) ** -0.5`` from the full ``C`` (integer division), as in the
    official model, not from the ``4C/5`` attention channels.

    Args:
        dim (int): Channels ``C``; ``C // 5 * 4`` must be a multiple of ``num_heads``.
        num_heads (int): Attention heads. Defaults to 8.
        qkv_bias (bool): Bias of ``qkv``. Defaults to True.
        qk_scale (float, optional): Overrides ``scale``.
        proj_drop (float): Dropout after ``proj``. Defaults to 0.
        crpe_window (dict): Kernel size -> heads of the relative position encoding (the counts
            sum to ``num_heads``). Defaults to ``{3: 2, 5: 3, 7: 3}``.
        norm_cfg (dict): Norm of the aggregators. Defaults to BN.
    """

    def __init__(self,
                 dim: int,
                 num_heads: int = 8,
                 qkv_bias: bool = True,
                 qk_scale: float = None,
                 proj_drop: float = 0.,
                 crpe_window: Dict[int, int] = DEFAULT_CRPE_WINDOW,
                 norm_cfg: dict = dict(type='BN')):
        super().__init__()
        attn_dim = dim // 5 * 4
        if dim % 5 or attn_dim % num_heads:
            raise ValueError(f'GroupMixAttention: dim={dim} must be a multiple of 5 whose '
                             f'attention part dim // 5 * 4 = {attn_dim} is a multiple of '
                             f'num_heads={num_heads}')
        if sum(crpe_window.values()) != num_heads:
            raise ValueError(f'GroupMixAttention: crpe_window={crpe_window!r} assigns '
                             f'{sum(crpe_window.values())} heads, num_heads={num_heads}')
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads)**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.aggregator = GroupAggregator(dim, norm_cfg=norm_cfg)
        self.crpe = ConvRelPosEnc(attn_dim // num_heads, crpe_window)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fused_inference(x):
            return self.mix(self.stacked_qkv(x))
        return self.mix(self.stack(self.qkv(x.permute(0, 2, 3, 1))))

    @staticmethod
    def stack(qkv: torch.Tensor) -> torch.Tensor:
        """``qkv``'s ``(B, H, W, 3C)`` output tokens as q, k, v stacked on the batch axis,
        ``(3B, H, W, C)``."""
        return rearrange(qkv, 'b h w (t c) -> (t b) h w c', t=3)

    def mix(self, qkv: torch.Tensor) -> torch.Tensor:
        """GMA after the ``qkv`` projection: ``(3B, H, W, C)`` stacked q, k, v tokens to the
        ``(B, C, H, W)`` output map."""
        B = qkv.shape[0] // 3
        # q, k, v stacked on the batch axis as channels-last maps (3B, C, H, W)
        proxies, local = self.aggregator(qkv.permute(0, 3, 1, 2))
        # channel-major proxies: per head, tokens are contiguous rows (softmax over them)
        q, k, v = proxies.contiguous().unflatten(0, (3, B)).unbind(0)
        y = self.linear_attention(q, k, v).mul_(self.scale) + self.crpe(q, v)
        # concatenated as (B, H, W, C) tokens for the projection
        y = torch.cat([y.permute(0, 2, 3, 1), local.permute(0, 2, 3, 1)], dim=-1)
        return self.proj_drop(self.proj(y)).permute(0, 3, 1, 2)

    def stacked_qkv(self, x: torch.Tensor) -> torch.Tensor:
        """``qkv(x)`` split into q | k | v and stacked on the batch axis, ``(3B, H, W, C)``
        tokens, by one batched matrix product straight into that layout (no copy)."""
        B, C, H, W = x.shape
        tokens = x.permute(0, 2, 3, 1).reshape(1, B * H * W, C).expand(3, -1, -1)
        weight = self.qkv.weight.view(3, C, C).transpose(1, 2)
        if self.qkv.bias is None:
            qkv = torch.bmm(tokens, weight)
        else:
            qkv = torch.baddbmm(self.qkv.bias.view(3, 1, C), tokens, weight)
        return qkv.view(3 * B, H, W, C)

    def linear_attention(self, q: torch.Tensor, k: torch.Tensor,
                         v: torch.Tensor) -> torch.Tensor:
        """``q (softmax_N(k)^T v)`` per head on ``(B, heads * Ch, H, W)`` maps (no scale)."""
        H = q.shape[2]
        q, k, v = (rearrange(t, 'b (n c) h w -> b n c (h w)', n=self.num_heads)
                   for t in (q, k, v))
        context = softmax_context(k, v)  # (B, heads, Ch_k, Ch_v)
        out = context.transpose(-2, -1) @ q  # (q @ context)^T: (B, heads, Ch_v, N)
        return rearrange(out, 'b n c (h w) -> b (n c) h w', h=H)

# Copyright (c) mmevo contributors. All rights reserved.
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.heads import ClsHead

from mmevo.registry import MODELS
from ..layers.mlp import Mlp
from ..layers.token_attention import CrossAttention


class ClassAttentionBlock(nn.Module):
    """A class token attends to the tokens, then an MLP (both residual, pre-norm)::

        cls = cls + attn(query=LN(cls), context=kv_norm(tokens))
        cls = cls + mlp(LN(cls))

    Args:
        dim (int): Channels.
        num_heads (int): Attention heads.
        mlp_ratio (float): MLP expansion. Defaults to 4.
        qkv_bias (bool): Bias of the ``q`` and ``kv`` projections. Defaults to True.
        kv_norm (bool): Normalise the tokens with this block's own LayerNorm (EATFormer's
            TRHead) instead of taking them as given (EAT: normalised once by the head).
            Defaults to False.
        eps (float): LayerNorm epsilon. Defaults to 1e-6.
        drop (float): Dropout after the projection and in the MLP. Defaults to 0.
        attn_drop (float): Attention dropout. Defaults to 0.
    """

    def __init__(self,
                 dim: int,
                 num_heads: int,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 kv_norm: bool = False,
                 eps: float = 1e-6,
                 drop: float = 0.,
                 attn_drop: float = 0.):
        super().__init__()
        self.norm_kv = nn.LayerNorm(dim, eps=eps) if kv_norm else nn.Identity()
        self.norm_q = nn.LayerNorm(dim, eps=eps)
        self.attn = CrossAttention(dim, num_heads, qkv_bias, attn_drop, drop)
        self.norm_mlp = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, tokens: torch.Tensor, cls_token: torch.Tensor) -> torch.Tensor:
        cls_token = cls_token + self.attn(self.norm_q(cls_token), self.norm_kv(tokens))
        return cls_token + self.mlp(self.norm_mlp(cls_token))


@MODELS.register_module()
class ClassAttentionHead(ClsHead):
    """Class-attention classification head for mmpretrain.

    A learnable class token attends to the backbone's last output through ``num_blocks``
    :class:`ClassAttentionBlock` s (the task-related head of `EAT
    <https://arxiv.org/abs/2105.15089>`_, CaiT's class attention), then a linear classifier
    reads it::

        tokens = LN(flatten(x))                  # norm_tokens=True (EAT's final norm)
        cls = block_k(tokens, cls), k = 1..num_blocks
        logits = fc(cls)

    With ``norm_tokens=False, kv_norm=True`` every block normalises the tokens itself instead,
    as EATFormer's TRHead does.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Channels of the backbone's last output.
        num_heads (int): Heads of the class attention (EAT: the arch's ``num_heads``).
        num_blocks (int): Class-attention blocks. Defaults to 2 (EAT's ``depth_cls``).
        mlp_ratio (float): MLP expansion. Defaults to 4.
        qkv_bias (bool): Bias of the ``q`` and ``kv`` projections. Defaults to True.
        norm_tokens (bool): LayerNorm the tokens once, before all blocks. Defaults to True.
        kv_norm (bool): A LayerNorm of the tokens in every block. Defaults to False.
        norm_eps (float): LayerNorm epsilon. Defaults to 1e-6.
        drop_rate (float): Dropout in the blocks. Defaults to 0.
        attn_drop_rate (float): Attention dropout. Defaults to 0.
        init_cfg (dict, optional): Defaults to truncated-normal (std 0.02) Linear weights with
            zero biases, as the official model.
        **kwargs: ``loss``, ``topk``, ``cal_acc`` of :class:`mmpretrain.models.ClsHead`.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 num_heads: int,
                 num_blocks: int = 2,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 norm_tokens: bool = True,
                 kv_norm: bool = False,
                 norm_eps: float = 1e-6,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 init_cfg: Optional[dict] = dict(
                     type='TruncNormal', layer='Linear', std=0.02, bias=0.),
                 **kwargs):
        super().__init__(init_cfg=init_cfg, **kwargs)
        for arg, value, low in (('num_classes', num_classes, 1), ('in_channels', in_channels, 1),
                                ('num_heads', num_heads, 1), ('num_blocks', num_blocks, 0)):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f'ClassAttentionHead: {arg}={value!r} must be an int >= {low}')
        if in_channels % num_heads:
            raise ValueError(f'ClassAttentionHead: in_channels={in_channels} must be a multiple '
                             f'of num_heads={num_heads}')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.norm = nn.LayerNorm(in_channels, eps=norm_eps) if norm_tokens else nn.Identity()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, in_channels))
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        self.blocks = nn.ModuleList(
            ClassAttentionBlock(in_channels, num_heads, mlp_ratio, qkv_bias, kv_norm, norm_eps,
                                drop_rate, attn_drop_rate) for _ in range(num_blocks))
        self.fc = nn.Linear(in_channels, num_classes)

    def pre_logits(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The class token after the blocks, ``(B, C)``, from the last of ``feats``: a
        ``(B, C, H, W)`` map or ``(B, N, C)`` tokens."""
        x = feats[-1]
        if x.dim() == 4 and x.shape[1] == self.in_channels:
            x = x.flatten(2).transpose(1, 2)
        elif not (x.dim() == 3 and x.shape[2] == self.in_channels):
            raise ValueError(f'ClassAttentionHead expects (B, {self.in_channels}, H, W) maps or '
                             f'(B, N, {self.in_channels}) tokens, got {tuple(x.shape)}')
        tokens = self.norm(x)
        cls_token = self.cls_token.expand(x.shape[0], -1, -1)
        for block in self.blocks:
            cls_token = block(tokens, cls_token)
        return cls_token[:, 0]

    def forward(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.fc(self.pre_logits(feats))

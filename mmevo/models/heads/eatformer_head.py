# Copyright (c) mmevo contributors. All rights reserved.
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.heads import ClsHead

from mmevo.registry import MODELS
from ..backbones.eatformer.trhead import TRHead
from ..layers.folding import bn_affine


@MODELS.register_module()
class EATFormerClsHead(ClsHead):
    """EATFormer's classification head for mmpretrain: ``fc(mean_hw(BN(x)))``.

    The official head normalises the last stage map with BatchNorm (eps 1e-5) *before* global
    average pooling. With ``num_trheads > 0`` (the official ``cls_head_nums``) a learnable class
    token first attends to the map through that many :class:`TRHead` blocks (Task-Related Head)
    and replaces it.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Channels of the last backbone stage.
        num_trheads (int): TRHead blocks; 0 (published models) disables them. Defaults to 0.
        dim_head (int): Channels per TRHead attention head (the backbone's last ``dim_heads``).
        mlp_ratio (float): TRHead MLP expansion (the backbone's ``mlp_ratio``). Defaults to 4.
        qkv_bias (bool): TRHead q/kv bias. Defaults to True.
        norm_eps (float): Epsilon of the head BatchNorm. Defaults to 1e-5.
        init_cfg (dict, optional): Defaults to truncated-normal (std 0.02) Linear weights.
        **kwargs: ``loss``, ``topk``, ``cal_acc`` of :class:`mmpretrain.models.ClsHead`.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 num_trheads: int = 0,
                 dim_head: int = 32,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 norm_eps: float = 1e-5,
                 init_cfg: Optional[dict] = dict(
                     type='TruncNormal', layer='Linear', std=0.02, bias=0.),
                 **kwargs):
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes <= 0:
            raise ValueError(f'num_classes={num_classes} must be a positive integer')
        self.num_classes = num_classes
        self.in_channels = in_channels
        if num_trheads > 0:
            self.cls_token = nn.Parameter(torch.zeros(1, in_channels, 1, 1))
            nn.init.trunc_normal_(self.cls_token, std=0.02)
            self.trheads = nn.ModuleList(
                TRHead(in_channels, dim_head, mlp_ratio, qkv_bias) for _ in range(num_trheads))
        else:
            self.cls_token, self.trheads = None, nn.ModuleList()
        self.norm = nn.BatchNorm2d(in_channels, eps=norm_eps)
        self.fc = nn.Linear(in_channels, num_classes)

    def pre_logits(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        x = feats[-1]
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'EATFormerClsHead expects (B, {self.in_channels}, H, W) maps, got '
                             f'{tuple(x.shape)}')
        if self.cls_token is not None:
            token = self.cls_token.expand(x.shape[0], -1, -1, -1)
            for block in self.trheads:
                token = block(x, token)
            x = token
        return self.norm(x).mean((2, 3))

    def forward(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.fc(self.pre_logits(feats))

    @torch.no_grad()
    def fuse(self) -> 'EATFormerClsHead':
        """Fold the BatchNorm into ``fc`` (it commutes with the average pooling); inference."""
        if isinstance(self.norm, nn.BatchNorm2d):
            scale, shift = bn_affine(self.norm)
            self.fc.bias.add_(self.fc.weight @ shift)
            self.fc.weight.mul_(scale)
            self.norm = nn.Identity()
        return self.eval()

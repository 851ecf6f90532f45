# Copyright (c) mmevo contributors. All rights reserved.
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.heads import ClsHead

from mmevo.registry import MODELS
from ..layers.folding import bn_affine, is_bn
from ..layers.norm import build_norm


@MODELS.register_module()
class GroupMixFormerClsHead(ClsHead):
    """GroupMixFormer's classification head for mmpretrain: ``fc(mean_hw(norm(x)))``.

    The official head normalises the last stage map with a BatchNorm (``norm4``, SyncBN in the
    official training) *before* global average pooling; in training its statistics are taken
    over all positions, which a BatchNorm after pooling would not reproduce.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Channels of the last backbone stage.
        norm_cfg (dict): The norm. Defaults to ``dict(type='BN')`` (eps 1e-5); SyncBN in
            multi-GPU configs.
        init_cfg (dict, optional): Defaults to truncated-normal (std 0.02) Linear weights and zero
            biases, the official initialisation.
        **kwargs: ``loss``, ``topk``, ``cal_acc`` of :class:`mmpretrain.models.ClsHead`.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg: Optional[dict] = dict(
                     type='TruncNormal', layer='Linear', std=0.02, bias=0.),
                 **kwargs):
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes <= 0:
            raise ValueError(f'num_classes={num_classes} must be a positive integer')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.norm = build_norm(norm_cfg, in_channels)
        self.fc = nn.Linear(in_channels, num_classes)

    def pre_logits(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        x = feats[-1]
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'GroupMixFormerClsHead expects (B, {self.in_channels}, H, W) maps, '
                             f'got {tuple(x.shape)}')
        return self.norm(x).mean((2, 3))

    def forward(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.fc(self.pre_logits(feats))

    @torch.no_grad()
    def fuse(self) -> 'GroupMixFormerClsHead':
        """Fold the BatchNorm into ``fc`` (it commutes with the average pooling); inference."""
        if is_bn(self.norm):
            scale, shift = bn_affine(self.norm)
            self.fc.bias.add_(self.fc.weight @ shift)
            self.fc.weight.mul_(scale)
            self.norm = nn.Identity()
        return self.eval()

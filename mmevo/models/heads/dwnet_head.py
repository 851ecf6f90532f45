# Copyright (c) mmevo contributors. All rights reserved.
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.heads import ClsHead

from mmevo.registry import MODELS


@MODELS.register_module()
class DWNetClsHead(ClsHead):
    """DWNet's classification head for mmpretrain: ``fc(mean_hw(LayerNorm_c(x)))``.

    The official model normalises every position of the last stage map with a LayerNorm over the
    channels (eps 1e-5) *before* global average pooling, as Swin does.

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Channels of the last backbone stage.
        norm_eps (float): Epsilon of the LayerNorm. Defaults to 1e-5.
        init_cfg (dict, optional): Defaults to truncated-normal (std 0.02) Linear weights.
        **kwargs: ``loss``, ``topk``, ``cal_acc`` of :class:`mmpretrain.models.ClsHead`.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 norm_eps: float = 1e-5,
                 init_cfg: Optional[dict] = dict(
                     type='TruncNormal', layer='Linear', std=0.02, bias=0.),
                 **kwargs):
        super().__init__(init_cfg=init_cfg, **kwargs)
        if num_classes <= 0:
            raise ValueError(f'num_classes={num_classes} must be a positive integer')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.norm = nn.LayerNorm(in_channels, eps=norm_eps)
        self.fc = nn.Linear(in_channels, num_classes)

    def pre_logits(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        x = feats[-1]
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'DWNetClsHead expects (B, {self.in_channels}, H, W) maps, got '
                             f'{tuple(x.shape)}')
        return self.norm(x.permute(0, 2, 3, 1)).mean((1, 2))

    def forward(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.fc(self.pre_logits(feats))

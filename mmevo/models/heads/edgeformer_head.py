# Copyright (c) mmevo contributors. All rights reserved.
from typing import Optional, Tuple

import torch
import torch.nn as nn
from mmpretrain.models.heads import ClsHead

from mmevo.registry import MODELS
from ..backbones.edgeformer import conv_norm_act, run_conv_module


@MODELS.register_module()
class EdgeFormerClsHead(ClsHead):
    """EdgeFormer's classifier for mmpretrain: ``fc(dropout(mean_hw(conv_1x1_exp(x))))``.

    The official model expands the last stage with a 1x1 conv-BN-SiLU (``conv_1x1_exp``,
    ``min(4 * C, 960)`` channels) before global average pooling, dropout (0.2) and the linear
    classifier (`ParC-Net / EdgeFormer <https://arxiv.org/abs/2203.03952>`_).

    Args:
        num_classes (int): Number of classes.
        in_channels (int): Channels of the last backbone stage.
        mid_channels (int, optional): Channels of ``conv_1x1_exp``; None: ``min(4 *
            in_channels, 960)`` (the official ``last_layer_exp_factor`` 4).
        dropout (float): Dropout before the linear layer. Defaults to 0.2.
        norm_cfg (dict): Norm of ``conv_1x1_exp``. Defaults to BN.
        init_cfg (dict | list, optional): Defaults to the official initialisation:
            Kaiming-normal (fan-out) convolution, truncated-normal (std 0.02) linear weights,
            zero biases.
        **kwargs: ``loss``, ``topk``, ``cal_acc`` of :class:`mmpretrain.models.ClsHead`.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 mid_channels: Optional[int] = None,
                 dropout: float = 0.2,
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg: Optional[dict] = [
                     dict(type='Kaiming', layer='Conv2d', mode='fan_out'),
                     dict(type='TruncNormal', layer='Linear', std=0.02, bias=0.)
                 ],
                 **kwargs):
        super().__init__(init_cfg=init_cfg, **kwargs)
        for name, value in (('num_classes', num_classes), ('in_channels', in_channels),
                            ('mid_channels', mid_channels)):
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ValueError(f'EdgeFormerClsHead: {name}={value!r} must be a positive int')
        if not 0 <= dropout < 1:
            raise ValueError(f'EdgeFormerClsHead: dropout={dropout!r} must be in [0, 1)')
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.mid_channels = mid_channels or min(4 * in_channels, 960)
        self.conv_1x1_exp = conv_norm_act(in_channels, self.mid_channels, 1, norm_cfg)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.mid_channels, num_classes)

    def pre_logits(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        x = feats[-1]
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'EdgeFormerClsHead expects (B, {self.in_channels}, H, W) maps, '
                             f'got {tuple(x.shape)}')
        return run_conv_module(self.conv_1x1_exp, x).mean((2, 3))

    def forward(self, feats: Tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self.fc(self.dropout(self.pre_logits(feats)))

# Copyright (c) mmevo contributors. All rights reserved.
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer


def build_norm(norm_cfg: dict, num_features: int) -> nn.Module:
    """Build a norm layer from an mmcv ``norm_cfg`` (``BN``, ``SyncBN``, ``LN2d``, ...)."""
    if norm_cfg.get('type') == 'LN2d':
        cfg = dict(norm_cfg)
        cfg.pop('type')
        return LayerNorm2d(num_features, **cfg)
    return build_norm_layer(norm_cfg, num_features)[1]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias,
                         self.eps)
        return x.permute(0, 3, 1, 2)

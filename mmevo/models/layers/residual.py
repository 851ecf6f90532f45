# Copyright (c) mmevo contributors. All rights reserved.
"""Residual addition with stochastic depth in one pass."""
import torch
import torch.nn as nn


def add_residual(x: torch.Tensor, y: torch.Tensor, drop_path: nn.Module) -> torch.Tensor:
    """``x + drop_path(y)`` where ``drop_path`` is mmcv's ``DropPath`` or ``nn.Identity``.

    While training, the per-sample keep mask (scaled by ``1 / keep_prob``) multiplies ``y``
    inside one ``addcmul`` instead of ``DropPath``'s separate division and multiplication.
    """
    drop_prob = getattr(drop_path, 'drop_prob', 0.)
    if not drop_path.training or drop_prob == 0:
        return x + y
    keep_prob = 1 - drop_prob
    mask = y.new_empty((y.shape[0], ) + (1, ) * (y.dim() - 1)).bernoulli_(keep_prob)
    return torch.addcmul(x, y, mask.div_(keep_prob))

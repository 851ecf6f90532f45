# Copyright (c) mmevo contributors. All rights reserved.
import torch
import torch.nn as nn


class Mlp(nn.Module):
    """Transformer feed-forward network on ``(..., C)`` tokens.

    ``drop(fc2(drop(GELU(fc1(x)))))`` with exact (erf) GELU, as timm's ``Mlp``.

    Args:
        in_features (int): Input channels.
        hidden_features (int): Hidden channels.
        out_features (int, optional): Output channels. Defaults to ``in_features``.
        drop (float): Dropout after the activation and after ``fc2``. Defaults to 0.
    """

    def __init__(self,
                 in_features: int,
                 hidden_features: int,
                 out_features: int = None,
                 drop: float = 0.):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features or in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))

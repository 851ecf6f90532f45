# Copyright (c) mmevo contributors. All rights reserved.
"""A stand-in for another implementation's model factory (benchmark.py external=...)."""
import torch.nn as nn


def tiny_classifier() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.SiLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))


def not_a_module():
    return 'model'

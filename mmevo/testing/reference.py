# Copyright (c) mmevo contributors. All rights reserved.
"""Straightforward baseline formulations of mmevo backbones, on the same weights.

``tools/analysis_tools/benchmark.py --reference`` measures the fast path against these (speed and
memory ratios on the same machine, model and weights); the tests check both give the same
outputs.
"""
import torch.nn as nn


def _baselines() -> dict:
    from mmevo.models.backbones.eatformer import EATFormer
    from .eatformer_reference import ReferenceEATFormer
    return {EATFormer: ReferenceEATFormer}


def as_reference(backbone: nn.Module) -> nn.Module:
    """Wrap ``backbone`` so that its forward runs the straightforward baseline formulation.

    Raises:
        TypeError: when mmevo has no baseline for the backbone's class.
    """
    baselines = _baselines()
    for cls, wrapper in baselines.items():
        if isinstance(backbone, cls):
            return wrapper(backbone)
    names = ', '.join(cls.__name__ for cls in baselines)
    raise TypeError(f'mmevo has no reference formulation of {type(backbone).__name__} '
                    f'(available: {names})')

# Copyright (c) mmevo contributors. All rights reserved.
"""Official ParC-ConvNeXt (``ParC_ConvNets/ParC_convnext.py`` of ``hkzhang91/ParC-Net``) -> mmevo.

The authors released no ParC-ConvNeXt weights; this converts checkpoints trained with the
official code (``ParC_ConvNeXt`` state dicts, raw or under ``'model'`` / ``'state_dict'``) and
serves the parity test against the official model.
"""
from typing import Dict, Mapping

import torch
import torch.nn as nn

from .base import ConversionError, Scope, extract_state_dict, rename_keys, require_prefixes
from .registry import FamilyConverter, register_converter

_BLOCK = [
    (r'gcc_([HW])\.pe$', lambda m: f'gcc_{m[1].lower()}.pe.weight'),
    (r'gcc_([HW])\.gcc_conv\.', lambda m: f'gcc_{m[1].lower()}.gcc.'),
    (r'(dwconv|norm|pwconv1|pwconv2)\.', r'\1.'),
    (r'gamma$', 'gamma'),
]
GCC_CONVNEXT_RULES = [
    (r'downsample_layers\.0\.([01])\.', r'backbone.stem.\1.'),
    # stages 1-3 start with their down-sampling layer
    (r'downsample_layers\.([123])\.([01])\.', r'backbone.stages.\1.0.\2.'),
    Scope(r'stages\.0\.(\d+)\.', r'backbone.stages.0.\1.', _BLOCK),
    Scope(r'stages\.([123])\.(\d+)\.', lambda m: f'backbone.stages.{m[1]}.{int(m[2]) + 1}.',
          _BLOCK),
    (r'norm\.', 'backbone.out_norms.0.'),
    (r'head\.', 'head.fc.'),
]


def convert_gcc_convnext(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """Convert an official ``ParC_ConvNeXt`` state dict to mmevo keys (``backbone.*`` of
    :class:`mmevo.models.GCCConvNeXt` with ``out_indices=-1``, its final norm as
    ``backbone.out_norms.0``, and ``head.fc.*`` of mmpretrain's ``LinearClsHead``).

    Raises:
        ConversionError: keys that no official ParC-ConvNeXt has (named).
    """
    state_dict = extract_state_dict(checkpoint, ('state_dict', 'model'))
    require_prefixes(state_dict, ['downsample_layers.0.'], 'ParC-ConvNeXt')
    return rename_keys(state_dict, GCC_CONVNEXT_RULES, 'ParC-ConvNeXt')


class _LinearHead(nn.Module):
    """``fc`` on the backbone's pooled, normalised ``(N, C, 1, 1)`` map (what mmpretrain's
    ``GlobalAveragePooling`` + ``LinearClsHead`` compute)."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, feats):
        return self.fc(feats[-1].flatten(1))


def build_official(official: Mapping, **backbone_overrides) -> nn.Module:
    """The port of an official ``ParC_ConvNeXt(**kwargs)`` / ``parc_convnext_xt()``."""
    from mmevo.models import GCCConvNeXt
    from mmevo.testing import ClassifierUnderTest
    kw = dict(official.get('kwargs') or {})
    if official.get('constructor') == 'parc_convnext_xt':
        kw = dict(depths=[3, 3, 9, 3], dims=[48, 96, 192, 384], ParC_insert_locs=[3, 3, 6, 2],
                  stages_rs=[56, 28, 14, 7], **kw)
    arch = dict(channels=kw.pop('dims', [96, 192, 384, 768]),
                depths=kw.pop('depths', [3, 3, 9, 3]),
                gcc_start=kw.pop('ParC_insert_locs', [3, 3, 6, 2]),
                gcc_kernel_sizes=kw.pop('stages_rs', [56, 28, 14, 7]))
    backbone = dict(arch=arch, in_channels=kw.pop('in_chans', 3),
                    drop_path_rate=kw.pop('drop_path_rate', 0.),
                    layer_scale_init_value=kw.pop('layer_scale_init_value', 1e-6),
                    resize_kernels=False, gap_before_final_norm=True)
    num_classes = kw.pop('num_classes', 1000)
    kw.pop('head_init_scale', None)
    if kw:
        raise ConversionError(f'unknown official ParC_ConvNeXt kwargs: {sorted(kw)}')
    model = GCCConvNeXt(**{**backbone, **backbone_overrides})
    return ClassifierUnderTest(model, _LinearHead(arch['channels'][-1], num_classes))


GCC_CONVNEXT_CONVERTER = register_converter(
    FamilyConverter(
        family='gcc_convnext',
        model_name='ParC-ConvNeXt',
        backbone='GCCConvNeXt',
        convert=convert_gcc_convnext,
        build_official=build_official,
        fixture_families=('gcc_convnext', )))

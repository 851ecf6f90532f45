# Copyright (c) mmevo contributors. All rights reserved.
"""Official GroupMixFormer checkpoints (``AILab-CVC/GroupMixFormer``) -> mmevo.

The official checkpoints are ``{'model': state_dict}`` of the classification model; weights of
the official ``return_interm_layers=True`` backbone (no ``norm4``/``head``) convert too.
"""
from typing import Dict, Mapping, Optional

import torch
import torch.nn as nn

from .base import (
    ConversionError,
    Scope,
    extract_state_dict,
    rename_keys,
    require_prefixes,
    strip_prefix,
)
from .registry import FamilyConverter, register_converter

_AGG = r'att\.aggregator\.'
#: Rules inside one block (``groupmixformer_backbone.{i}.gma_stage.{j}.``).
_BLOCK_RULES = [
    (r'cpe\.proj\.', 'cpe.'),
    (r'(norm1|norm2)\.', r'\1.'),
    (r'att\.(qkv|proj)\.', r'attn.\1.'),
    (_AGG + r'norm([0-3])\.', r'attn.aggregator.norms.\1.'),
    (_AGG + r'agg([1-3])\.conv1\.', r'attn.aggregator.aggregators.\1.depthwise.'),
    (_AGG + r'agg([1-3])\.pointwise_conv\.', r'attn.aggregator.aggregators.\1.pointwise.'),
    (_AGG + r'agg0\.conv\.conv1\.', 'attn.aggregator.local_aggregator.depthwise.'),
    (_AGG + r'agg0\.conv\.pointwise_conv\.', 'attn.aggregator.local_aggregator.pointwise.'),
    (_AGG + r'agg0\.norm\.', 'attn.aggregator.local_norm.'),
    (r'att\.crpe\.conv_list\.(\d)\.', r'attn.crpe.convs.\1.'),
    (r'mlp\.(fc1|fc2)\.', r'mlp.\1.'),
]

GROUPMIXFORMER_RULES = [
    (r'conv_stem\.proj([12])\.', r'backbone.stem.conv\1.'),
    (r'conv_stem\.norm([12])\.', r'backbone.stem.norm\1.'),
    # stage i = patch_embed_layers.i (layer 0) + the blocks of groupmixformer_backbone.i
    (r'patch_embed_layers\.(\d)\.proj\.conv1\.', r'backbone.stages.\1.0.conv.depthwise.'),
    (r'patch_embed_layers\.(\d)\.proj\.pointwise_conv\.',
     r'backbone.stages.\1.0.conv.pointwise.'),
    (r'patch_embed_layers\.(\d)\.norm\.', r'backbone.stages.\1.0.norm.'),
    Scope(r'groupmixformer_backbone\.(\d)\.gma_stage\.(\d+)\.',
          lambda m: f'backbone.stages.{m[1]}.{int(m[2]) + 1}.', _BLOCK_RULES),
    (r'norm4\.', 'head.norm.'),
    (r'head\.(weight|bias)$', r'head.fc.\1'),
]


def convert_groupmixformer(checkpoint: Mapping) -> Dict[str, torch.Tensor]:
    """Convert an official GroupMixFormer checkpoint to mmevo keys (``backbone.*``, ``head.*``).

    Args:
        checkpoint (dict): A raw state dict, or a checkpoint holding it under ``'model'`` (the
            official format) or ``'state_dict'``. A leading ``backbone.`` (a detector's backbone)
            is taken as the backbone; other detector parts are dropped.

    Raises:
        ConversionError: the checkpoint holds keys that no official GroupMixFormer has (they are
            named).
    """
    state_dict = strip_prefix(extract_state_dict(checkpoint), 'backbone.')
    require_prefixes(state_dict, ['conv_stem.', 'groupmixformer_backbone.'], 'GroupMixFormer')
    return rename_keys(state_dict, GROUPMIXFORMER_RULES, 'GroupMixFormer')


def official_kwargs_to_mmevo(kwargs: Mapping) -> dict:
    """Map official ``GroupMixFormer`` constructor kwargs to mmevo configs.

    Returns:
        dict: ``backbone`` (kwargs of :class:`mmevo.models.GroupMixFormer`) and ``head`` (kwargs
        of ``GroupMixFormerClsHead``, or None for ``return_interm_layers=True``).
    """
    kw = dict(kwargs)
    for unused in ('patch_size', 'pretrained', 'out_features'):  # ignored by the official code
        kw.pop(unused, None)
    if kw.pop('num_stages', 4) != 4:
        raise ConversionError('only 4-stage GroupMixFormers exist (num_stages=4)')
    if kw.pop('norm_layer', None) is not None:
        raise ConversionError('only the default norm_layer (LayerNorm, eps 1e-6) is supported')
    if kw.pop('attn_drop_rate', 0.) != 0:
        raise ConversionError('attn_drop_rate has no effect in the official model; got '
                              f'{kwargs["attn_drop_rate"]}')
    arch = dict(
        embed_dims=list(kw.pop('embedding_dims', [80, 160, 320, 320])),
        depths=list(kw.pop('serial_depths', [2, 4, 12, 4])),
        mlp_ratios=list(kw.pop('mlp_ratios', [4, 4, 4, 4])),
        num_heads=kw.pop('num_heads', 8),
        qkv_bias=kw.pop('qkv_bias', True),
        qk_scale=kw.pop('qk_scale', None),
        drop_path_rate=kw.pop('drop_path_rate', 0.2))
    backbone = dict(arch=arch, in_channels=kw.pop('in_dim', 3), drop_rate=kw.pop('drop_rate', 0.))
    num_classes = kw.pop('num_classes', 1000)
    interm = kw.pop('return_interm_layers', False)
    if kw:
        raise ConversionError(f'unknown official GroupMixFormer kwargs: {sorted(kw)}')
    if interm:
        return dict(backbone=dict(backbone, out_indices=(0, 1, 2, 3)), head=None)
    head = dict(num_classes=num_classes, in_channels=arch['embed_dims'][-1])
    return dict(backbone=backbone, head=head)


def build_official(official: Mapping, **backbone_overrides) -> nn.Module:
    """The mmevo port of an official GroupMixFormer (parity fixture or manifest entry)."""
    from mmevo.models import GroupMixFormer, GroupMixFormerClsHead
    from mmevo.testing import ClassifierUnderTest
    cfg = official_kwargs_to_mmevo(official['kwargs'])
    head: Optional[nn.Module] = None
    if cfg['head'] is not None:
        head = GroupMixFormerClsHead(**cfg['head'])
    return ClassifierUnderTest(GroupMixFormer(**{**cfg['backbone'], **backbone_overrides}), head)


GROUPMIXFORMER_CONVERTER = register_converter(
    FamilyConverter(
        family='groupmixformer',
        model_name='GroupMixFormer',
        backbone='GroupMixFormer',
        convert=convert_groupmixformer,
        build_official=build_official,
        fixture_families=('groupmixformer', )))

# Copyright (c) mmevo contributors. All rights reserved.
"""Official EAT checkpoints (``TencentYoutuResearch/BaseArchitecture-EAT``) -> mmevo.

The classification model ``EATransformer`` with the ``main.py`` settings of the published models
(SIS tokenizer, ``Block_local`` with the 1-D convolution local path, two class-attention
blocks). Its checkpoints are ``{'model': state_dict, ...}``.

The two integer tensors ``loc_encoder.index_flat`` / ``index_flat_inv`` (the pixel permutation
of the space-filling-curve tokenizer, stored as ``nn.Parameter`` s) are not weights: the port's
patch convolution needs no permutation, so they are dropped and never required. The tokenizer's
``Conv1d`` weight ``[C, in, p*p]`` becomes the patch convolution's ``[C, in, p, p]``.
"""
import math
from typing import Dict, Mapping

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

#: Rules inside one block (``blocks.{j}.``).
_BLOCK_RULES = [
    (r'norm1\.', 'norm_global.'),
    (r'norm1_local\.', 'norm_local.'),
    (r'attn\.(qkv|proj)\.', r'attn.\1.'),
    (r'local\.linear\.', 'local.linear.'),
    (r'local\.local\.', 'local.conv.'),
    (r'norm2\.', 'norm_mlp.'),
    (r'mlp\.(fc1|fc2)\.', r'mlp.\1.'),
]
#: Rules inside one class-attention block (``blocks_cls.{k}.``).
_CLS_BLOCK_RULES = [
    (r'norm1\.', 'norm_q.'),
    (r'attn\.(q|kv|proj)\.', r'attn.\1.'),
    (r'norm2\.', 'norm_mlp.'),
    (r'mlp\.(fc1|fc2)\.', r'mlp.\1.'),
]

EAT_RULES = [
    (r'loc_encoder\.index_flat(_inv)?$', None),
    (r'patch_embed\.(weight|bias)$', r'backbone.stem.\1'),
    (r'pos_embed$', 'backbone.pos_embed'),
    Scope(r'blocks\.(\d+)\.', r'backbone.stages.\1.0.', _BLOCK_RULES),
    (r'norm\.(weight|bias)$', r'head.norm.\1'),
    (r'cls_token$', 'head.cls_token'),
    Scope(r'blocks_cls\.(\d+)\.', r'head.blocks.\1.', _CLS_BLOCK_RULES),
    (r'head\.(weight|bias)$', r'head.fc.\1'),
]


def is_index_key(key: str) -> bool:
    """The integer permutation tensors of the official tokenizer (dropped)."""
    return key.startswith('loc_encoder.index_flat')


def convert_eat(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """Convert an official EAT checkpoint to mmevo keys (``backbone.*``, ``head.*``).

    Args:
        checkpoint (dict): A raw state dict, or a training checkpoint holding it under
            ``'model'`` (as the official ``main.py`` saves) or ``'state_dict'``.

    Raises:
        ConversionError: the checkpoint holds keys that no official EAT classifier has (the
            unreleased distilled models' ``dist_token`` / ``head_dist``, another model...).
    """
    state_dict = strip_prefix(extract_state_dict(checkpoint), 'backbone.')
    require_prefixes(state_dict, ['blocks.0.', 'patch_embed.'], 'EAT')
    out = rename_keys(state_dict, EAT_RULES, 'EAT')
    weight = out.get('backbone.stem.weight')
    if weight is not None and weight.dim() == 3:
        side = math.isqrt(weight.shape[-1])
        if side * side != weight.shape[-1]:
            raise ConversionError(f'patch_embed.weight {tuple(weight.shape)}: the kernel '
                                  f'{weight.shape[-1]} is not the square of a patch size')
        out['backbone.stem.weight'] = weight.reshape(*weight.shape[:2], side, side)
    return out


#: Official constructor arguments whose only supported value is that of the published models.
_FIXED = dict(pos_emb=True, cls_token=False, cls_token_head=True, loc_encoder='sis',
              sfc_mode='first', block_type='base_local', local_type='conv', ffn_type='base',
              qk_scale=None)


def official_kwargs_to_mmevo(kwargs: Mapping) -> dict:
    """Map official ``EATransformer`` kwargs (a fixture's or manifest entry's resolved kwargs)
    to mmevo configs.

    Returns:
        dict: ``backbone`` (kwargs of :class:`mmevo.models.EAT`) and ``head`` (kwargs of
        :class:`mmevo.models.heads.ClassAttentionHead`).
    """
    kw = dict(kwargs)
    for key, value in _FIXED.items():
        got = kw.pop(key, value)
        if got != value:
            raise ConversionError(f'official EAT with {key}={got!r}: mmevo ports the published '
                                  f'models ({key}={value!r})')
    norm = kw.pop('norm_layer', None)
    if norm is not None and norm != {'partial': 'torch.nn.modules.normalization.LayerNorm',
                                     'kwargs': {'eps': 1e-06}}:
        raise ConversionError(f'official EAT with norm_layer={norm!r}: mmevo ports LayerNorm '
                              f'with eps 1e-6')
    arch = dict(
        embed_dims=kw.pop('embed_dim', 768),
        depth=kw.pop('depth', 12),
        num_heads=kw.pop('num_heads', 12),
        mlp_ratio=float(kw.pop('mlp_ratio', 4.)),
        local_ratio=kw.pop('local_ratio', 0.5),
        local_kernel_size=kw.pop('local_ks', 3),
        qkv_bias=kw.pop('qkv_bias', True),
        patch_size=kw.pop('patch_size', 16),
        drop_path_rate=kw.pop('drop_path_rate', 0.))
    drop = kw.pop('drop_rate', 0.)
    backbone = dict(arch=arch, img_size=kw.pop('img_size', 256), in_channels=kw.pop('in_chans', 3),
                    drop_rate=drop, attn_drop_rate=kw.pop('attn_drop_rate', 0.))
    head = dict(num_classes=kw.pop('num_classes', 1000), in_channels=arch['embed_dims'],
                num_heads=arch['num_heads'], num_blocks=kw.pop('depth_cls', 2),
                mlp_ratio=arch['mlp_ratio'], qkv_bias=arch['qkv_bias'], drop_rate=drop,
                attn_drop_rate=backbone['attn_drop_rate'])
    kw.pop('drop_block_rate', None)  # passed as None by main.py; timm drops it
    if kw:
        raise ConversionError(f'unknown official EAT kwargs: {sorted(kw)}')
    return dict(backbone=backbone, head=head)


def build_official(official: Mapping, **backbone_overrides) -> nn.Module:
    """The mmevo port of an official EAT (parity fixture or manifest entry)."""
    from mmevo.models import EAT
    from mmevo.models.heads import ClassAttentionHead
    from mmevo.testing import ClassifierUnderTest
    cfg = official_kwargs_to_mmevo(official.get('resolved_kwargs') or official['kwargs'])
    return ClassifierUnderTest(EAT(**{**cfg['backbone'], **backbone_overrides}),
                               ClassAttentionHead(**cfg['head']))


def port_params(entry: Mapping) -> int:
    """The official parameter count without the two integer permutation tensors (which are
    ``nn.Parameter`` s of the official model)."""
    if 'params_floating' in entry:
        return entry['params_floating']
    integers = sum(v.numel() for k, v in entry['state_dict'].items() if is_index_key(k))
    return entry['num_params'] - integers


EAT_CONVERTER = register_converter(
    FamilyConverter(
        family='eat',
        model_name='EAT',
        backbone='EAT',
        convert=convert_eat,
        build_official=build_official,
        fixture_families=('eat', ),
        ignored_official_keys=is_index_key,
        port_params=port_params))

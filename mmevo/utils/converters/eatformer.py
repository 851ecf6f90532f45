# Copyright (c) mmevo contributors. All rights reserved.
"""Official EATFormer checkpoints (``zhangzjn/EATFormer``) -> mmevo.

Covers the classification model (``EATFormer``, also with the TRHead) and the downstream
detection / segmentation backbone (``EAFormer``, which saves only ``stage0..stage4``).
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

_OP = r'layer2\.ops\.(\d+)\.'
#: Rules inside one block (``stage{s}.{j}.``).
_BLOCK_RULES = [
    (r'layer1\.norm\.', 'msra.norm.'),
    (r'layer1\.msp\.alphas$', 'msra.alphas'),
    (r'layer1\.msp\.convs\.(\d+)\.0\.', r'msra.convs.\1.'),
    (r'layer1\.msp\.conv_out\.', 'msra.proj.'),
    (r'layer1\.skip_conv\.1\.', 'msra.shortcut.conv.'),
    (r'layer1\.skip_conv\.2\.', 'msra.shortcut.norm.'),
    (r'layer2\.alphas$', 'gli.alphas'),
    (r'layer2\.norm\.', 'gli.norm.'),
    # 'dcn' op (its conv1 is the deformable conv; see _mark_dcn_ops)
    (_OP + r'conv1_offset\.', r'gli.ops.\1.offset_conv.'),
    (_OP + r'DCN\.conv1\.weight$', r'gli.ops.\1.dcn.weight'),
    # 'conv' op
    (_OP + r'conv1\.', r'gli.ops.\1.dwconv.'),
    (_OP + r'norm1\.', r'gli.ops.\1.norm.'),
    (_OP + r'conv2\.', r'gli.ops.\1.pwconv.'),
    # 'msa' op
    (_OP + r'gamma_msa$', r'gli.ops.\1.gamma'),
    (_OP + r'msa\.(qkv|proj)\.', r'gli.ops.\1.\2.'),
    # 'mdmsa' op
    (_OP + r'gamma_mdmsa$', r'gli.ops.\1.gamma'),
    (_OP + r'mdmsa\.conv_offset_modulation\.0\.', r'gli.ops.\1.offset.dwconv.'),
    (_OP + r'mdmsa\.conv_offset_modulation\.1\.', r'gli.ops.\1.offset.norm.'),
    (_OP + r'mdmsa\.conv_offset_modulation\.3\.', r'gli.ops.\1.offset.pwconv.'),
    (_OP + r'mdmsa\.(q|kv|proj)\.', r'gli.ops.\1.\2.'),
    (r'layer3\.gamma_mlp$', 'ffn.gamma'),
    (r'layer3\.norm\.', 'ffn.norm.'),
    (r'layer3\.mlp\.(fc1|fc2)\.', r'ffn.\1.'),
]

EATFORMER_RULES = [
    (r'stage0\.(\d)\.norm\.', r'backbone.stem.\1.norm.'),
    (r'stage0\.(\d)\.msp\.convs\.(\d+)\.0\.', r'backbone.stem.\1.convs.\2.'),
    (r'stage0\.(\d)\.msp\.conv_out\.', r'backbone.stem.\1.proj.'),
    # official stages 1-4 are mmevo's stages 0-3
    Scope(r'stage([1-4])\.(\d+)\.', lambda m: f'backbone.stages.{int(m[1]) - 1}.{m[2]}.',
          _BLOCK_RULES),
    (r'norm\.', 'head.norm.'),
    (r'head\.(weight|bias)$', r'head.fc.\1'),
    (r'cls_token$', 'head.cls_token'),
    (r'stage_cls\.(\d+)\.norm_kv\.norm\.', r'head.trheads.\1.norm_kv.'),
    (r'stage_cls\.(\d+)\.norm1\.norm\.', r'head.trheads.\1.norm_q.'),
    (r'stage_cls\.(\d+)\.norm2\.norm\.', r'head.trheads.\1.norm_mlp.'),
    (r'stage_cls\.(\d+)\.attn\.(q|kv|proj)\.', r'head.trheads.\1.attn.\2.'),
    (r'stage_cls\.(\d+)\.mlp\.(fc1|fc2)\.', r'head.trheads.\1.\2.'),
]


def _mark_dcn_ops(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Rename the deformable kernel of 'dcn' ops (``ops.i.conv1`` next to ``ops.i.conv1_offset``)
    so that the rules can tell it from the depth-wise ``conv1`` of 'conv' ops."""
    dcn_ops = {k[:-len('conv1_offset.weight')] for k in state_dict
               if k.endswith('conv1_offset.weight')}
    out = {}
    for key, value in state_dict.items():
        prefix = key[:-len('conv1.weight')]
        if key.endswith('.conv1.weight') and prefix in dcn_ops:
            key = prefix + 'DCN.conv1.weight'
        out[key] = value
    return out


def convert_eatformer(checkpoint: dict, use_ema: bool = False) -> Dict[str, torch.Tensor]:
    """Convert an official EATFormer checkpoint to mmevo keys (``backbone.*``, ``head.*``).

    Args:
        checkpoint (dict): A raw state dict, or a training checkpoint holding it under
            ``'net'`` (``'net_E'``, the EMA weights, with ``use_ema=True``), ``'model'`` or
            ``'state_dict'``. A leading ``backbone.`` (an mmdet/mmseg detector's backbone) is
            taken as the backbone; other detector parts are dropped.
        use_ema (bool): Take the EMA weights ``'net_E'``. Defaults to False.

    Raises:
        ConversionError: the checkpoint holds keys that no official EATFormer has.
    """
    keys = ('net_E', ) if use_ema else ('state_dict', 'model', 'net')
    if use_ema and 'net_E' not in checkpoint:
        raise ConversionError("use_ema=True but the checkpoint has no 'net_E' entry")
    state_dict = strip_prefix(extract_state_dict(checkpoint, keys), 'backbone.')
    require_prefixes(state_dict, ['stage0.'], 'EATFormer')
    return rename_keys(_mark_dcn_ops(state_dict), EATFORMER_RULES, 'EATFormer')


def official_kwargs_to_mmevo(kwargs: dict, num_classes: Optional[int] = None) -> dict:
    """Map official ``EATFormer``/``EAFormer`` constructor kwargs to mmevo configs.

    Returns:
        dict: ``backbone`` (kwargs of :class:`mmevo.models.EATFormer`) and ``head`` (kwargs of
        ``EATFormerClsHead``, or None for a downstream backbone without classifier).
    """
    kw = dict(kwargs)
    norms = kw.pop('norms', ['bn_2d'] * 3)
    if any(n != 'bn_2d' for n in norms):
        raise ConversionError(f'only bn_2d norms are supported (the official code cannot build '
                              f'others either), got {norms}')
    arch = {}
    for key in ('depths', 'embed_dims', 'dim_heads', 'window_sizes', 'kernel_sizes', 'down_mode',
                'dilations', 'msra_mode', 'msra_weight', 'msra_norm', 'msra_skip', 'qkv_bias',
                'op_names', 'd_groups', 'c_groups', 'gli_split', 'gli_weight', 'mlp_ratio'):
        if key in kw:
            arch[key] = kw.pop(key)
    ratio = kw.pop('gli_ratio', kw.pop('cr_ratio', None))
    arch['gli_ratio'] = ratio
    arch['drop_path_rate'] = kw.pop('drop_path', 0.)
    if 'global_pers' in kw:
        arch['global_window_periods'] = list(kw.pop('global_pers'))
    backbone = dict(
        arch=arch,
        in_channels=kw.pop('in_dim', 3),
        drop_rate=kw.pop('drop', 0.),
        attn_drop_rate=kw.pop('attn_drop', 0.))
    downstream = 'sync_bn' in kw or 'pretrained' in kw or 'freeze_stages' in kw
    if kw.pop('sync_bn', False):
        backbone['norm_cfg'] = dict(type='SyncBN', eps=1e-6)
    backbone['frozen_stages'] = kw.pop('freeze_stages', -1)
    backbone['norm_eval'] = kw.pop('norm_eval', False)
    kw.pop('pretrained', None)
    cls_head_nums = kw.pop('cls_head_nums', 0)
    classes = kw.pop('num_classes', 1000 if num_classes is None else num_classes)
    if kw:
        raise ConversionError(f'unknown official EATFormer kwargs: {sorted(kw)}')
    if downstream:
        backbone['out_indices'] = (0, 1, 2, 3)
        return dict(backbone=backbone, head=None)
    head = dict(
        num_classes=classes,
        in_channels=arch['embed_dims'][-1],
        num_trheads=cls_head_nums,
        dim_head=arch['dim_heads'][-1],
        mlp_ratio=arch.get('mlp_ratio', 4.),
        qkv_bias=arch.get('qkv_bias', True))
    return dict(backbone=backbone, head=head)


def build_official(official: Mapping, **backbone_overrides) -> nn.Module:
    """The mmevo port of an official EATFormer / EAFormer (parity fixture or manifest entry)."""
    from mmevo.models import EATFormer, EATFormerClsHead
    from mmevo.testing import ClassifierUnderTest
    cfg = official_kwargs_to_mmevo(official.get('resolved_kwargs') or official['kwargs'])
    head = EATFormerClsHead(**cfg['head']) if cfg['head'] else None
    return ClassifierUnderTest(EATFormer(**{**cfg['backbone'], **backbone_overrides}), head)


EATFORMER_CONVERTER = register_converter(
    FamilyConverter(
        family='eatformer',
        model_name='EATFormer',
        backbone='EATFormer',
        convert=convert_eatformer,
        build_official=build_official,
        fixture_families=('eatformer', 'eatformer_det'),
        cli_options=[(['--ema'], dict(action='store_true', dest='use_ema',
                                      help="take the EMA weights 'net_E'"))]))

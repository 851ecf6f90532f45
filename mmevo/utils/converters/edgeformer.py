# Copyright (c) mmevo contributors. All rights reserved.
"""Official EdgeFormer / ParC-Net checkpoints (``hkzhang91/EdgeFormer``, ml-cvnets) -> mmevo.

The official classification checkpoint is a raw (EMA-averaged) state dict of the ``edgeformer``
model. Its builder keeps each stage's stride-2 MobileNetV2 block also as ``self.residual`` (the
last assignment, ``layer_5.0``, wins), so every official checkpoint holds 18 ``residual.*`` keys
that alias ``layer_5.0.*``: they are checked to equal the tensors they alias and dropped.
Detection / segmentation checkpoints (``encoder.*`` plus the official SSD / DeepLabv3 heads)
give the backbone; their task heads are dropped.
"""
from collections import OrderedDict
from typing import Dict, Mapping

import torch
import torch.nn as nn

from .base import ConversionError, Scope, extract_state_dict, rename_keys, require_prefixes
from .registry import FamilyConverter, register_converter

#: ``ConvLayer`` (``block.conv``, ``block.norm``) -> mmcv ``ConvModule``.
_CONV = [(r'block\.conv\.', 'conv.'), (r'block\.norm\.', 'bn.')]
#: ``InvertedResidual``.
_MV2 = [(r'block\.(exp_1x1|conv_3x3|red_1x1)\.block\.conv\.', r'\1.conv.'),
        (r'block\.(exp_1x1|conv_3x3|red_1x1)\.block\.norm\.', r'\1.bn.')]
#: ``gcc_ca_mf_block`` -> :class:`mmevo.models.layers.GCCBlock`.
_GCC = [
    (r'meta_kernel_([12])_([HW])$', lambda m: f'gcc_{m[1]}_{m[2].lower()}.weight'),
    (r'meta_([12])_([HW])_bias$', lambda m: f'gcc_{m[1]}_{m[2].lower()}.bias'),
    (r'meta_pe_([12])_([HW])$', lambda m: f'pe_{m[1]}_{m[2].lower()}.weight'),
    (r'pre_Norm_([12])\.', r'norm_\1.'),
    (r'ffn\.0\.', 'ffn_norm.'),
    (r'ffn\.1\.', 'fc1.'),
    (r'ffn\.4\.', 'fc2.'),
    (r'ca\.fc\.0\.', 'ca.fc1.'),
    (r'ca\.fc\.1\.', 'ca.norm1.'),
    (r'ca\.fc\.3\.', 'ca.fc2.'),
    (r'ca\.fc\.4\.', 'ca.norm2.'),
]
_BN_KEYS = r'(weight|bias|running_mean|running_var|num_batches_tracked)$'
#: ``outer_frame_v1`` -> :class:`mmevo.models.backbones.edgeformer.OuterFrame`.
_FRAME = [
    Scope(r'dim_adaptive\.0\.', 'dim_adaptive.0.', _CONV),
    (r'dim_adaptive\.1\.block\.conv\.', 'dim_adaptive.1.'),
    Scope(r'spatial_global_rep\.(\d+)\.', r'spatial_global_rep.\1.', _GCC),
    # the BatchNorm after the GCC blocks
    (r'spatial_global_rep\.(\d+)\.' + _BN_KEYS, r'spatial_global_rep.\1.\2'),
    Scope(r'(channel_adaptive|local_global_fusion)\.', r'\1.', _CONV),
]
EDGEFORMER_RULES = [
    Scope(r'conv_1\.', 'backbone.stem.0.', _CONV),
    # official layer_1 follows conv_1 in mmevo's stem; layer_2..layer_5 are stages 0..3
    Scope(r'layer_1\.(\d+)\.', lambda m: f'backbone.stem.{int(m[1]) + 1}.', _MV2),
    Scope(r'layer_2\.(\d+)\.', r'backbone.stages.0.\1.', _MV2),
    Scope(r'layer_([345])\.0\.', lambda m: f'backbone.stages.{int(m[1]) - 2}.0.', _MV2),
    Scope(r'layer_([345])\.1\.', lambda m: f'backbone.stages.{int(m[1]) - 2}.1.', _FRAME),
    Scope(r'conv_1x1_exp\.', 'head.conv_1x1_exp.', _CONV),
    (r'classifier\.fc\.', 'head.fc.'),
]
#: Top-level parts of the official SSD / DeepLabv3 models besides ``encoder``.
TASK_HEAD_PREFIXES = ('ssd_heads.', 'extra_layers.', 'seg_head.', 'aux_head.')
ALIAS_PREFIX, ALIASED_PREFIX = 'residual.', 'layer_5.0.'


def drop_residual_aliases(state_dict: Mapping[str, torch.Tensor]) -> 'OrderedDict':
    """Drop the ``residual.*`` keys after checking each equals its ``layer_5.0.*`` twin.

    Raises:
        ConversionError: an alias without its twin, or with different values.
    """
    out = OrderedDict()
    for key, value in state_dict.items():
        if not key.startswith(ALIAS_PREFIX):
            out[key] = value
            continue
        twin = ALIASED_PREFIX + key[len(ALIAS_PREFIX):]
        if twin not in state_dict:
            raise ConversionError(f"'{key}' is the official alias of '{twin}' (layer_5's "
                                  f'stride-2 block), but the checkpoint has no such key')
        other = state_dict[twin]
        if value.shape != other.shape or not torch.equal(value, other):
            raise ConversionError(f"'{key}' must equal the tensor it aliases, '{twin}', but "
                                  f'they differ: the checkpoint was edited or mixed')
    return out


def convert_edgeformer(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """Convert an official EdgeFormer checkpoint to mmevo keys (``backbone.*``, ``head.*``).

    Args:
        checkpoint (dict): The raw state dict of a classification model (the released
            ``checkpoint_ema_avg.pt``), or a training checkpoint holding it under ``'model'`` /
            ``'state_dict'``; or an official SSD / DeepLabv3 state dict, whose ``encoder.*``
            is the backbone (its task heads are dropped).

    Raises:
        ConversionError: keys that no official EdgeFormer has (named), or ``residual.*``
            aliases that do not equal ``layer_5.0.*``.
    """
    state_dict = extract_state_dict(checkpoint, ('state_dict', 'model'))
    if any(k.startswith('encoder.') for k in state_dict):
        others = [k for k in state_dict
                  if not k.startswith(('encoder.', ) + TASK_HEAD_PREFIXES)]
        if others:
            raise ConversionError(f'keys of no official EdgeFormer detector / segmentor: '
                                  f'{others[:8]}')
        state_dict = OrderedDict((k[len('encoder.'):], v) for k, v in state_dict.items()
                                 if k.startswith('encoder.'))
    require_prefixes(state_dict, ['conv_1.', 'layer_1.'], 'EdgeFormer')
    return rename_keys(drop_residual_aliases(state_dict), EDGEFORMER_RULES, 'EdgeFormer')


# ------------------------------------------------------------------------------ official model

_SCALES = {'scale_xs': 'xs', 'scale_s': 's', 'scale_h': 'h'}
#: Official options with the only values the released configs use (others have no port).
_FIXED_OPTS = {
    'model.classification.edge.mode': 'outer_frame_v1',
    'model.classification.edge.kernel': 'gcc_ca',
    'model.classification.edge.instance_kernel': 'interpolation_bilinear',
    'model.classification.activation.name': 'swish',
    'model.layer.global_pool': 'mean',
}
_FIXED_LAYER = {'big_kernel_size': 0, 'mid_mix': False, 'kernel': 'gcc_ca',
                'instance_kernel_method': 'interpolation_bilinear',
                'block_type': 'outer_frame_v1', 'stride': 2}


def _arch_from_config(config: Mapping, scale: str) -> dict:
    """mmevo arch dict from an official configuration dict (``get_configuration`` format)."""
    l1, l2 = config['layer1'], config['layer2']
    frames = [config[f'layer{i}'] for i in (3, 4, 5)]
    for name, layer, stride in (('layer1', l1, 1), ('layer2', l2, 2)):
        if layer.get('block_type', 'mv2') != 'mv2' or layer.get('stride', 1) != stride:
            raise ConversionError(f'official {name} must be MobileNetV2 blocks at stride '
                                  f'{stride}, got {dict(layer)}')
    for i, layer in enumerate(frames, 3):
        bad = {k: layer.get(k) for k, v in _FIXED_LAYER.items() if layer.get(k, v) != v}
        if bad:
            raise ConversionError(f'official layer{i} settings {bad} have no mmevo port '
                                  f'(supported: {_FIXED_LAYER})')
    fusions = {layer['fusion'] for layer in frames}
    pes = {bool(layer.get('use_pe')) for layer in frames}
    if len(fusions) != 1 or len(pes) != 1:
        raise ConversionError(f'per-layer fusion / use_pe differ ({fusions}, {pes}); mmevo '
                              f'uses one value for all frames')
    return dict(
        stem_channels=48 if scale == 'scale_h' else 16,
        stem_kernel_size=5 if scale == 'scale_h' else 3,
        mv2_channels=[l1['out_channels'], l2['out_channels']],
        mv2_depths=[l1.get('num_blocks', 2), l2.get('num_blocks', 2)],
        mv2_expand_ratios=[l1.get('expand_ratio', 4), l2.get('expand_ratio', 4)],
        channels=[f['out_channels'] for f in frames],
        gcc_channels=[f['cf_s_channels'] for f in frames],
        ffn_channels=[f['cf_ffn_channels'] for f in frames],
        depths=[f['cf_blocks'] for f in frames],
        meta_kernel_sizes=[f['meta_kernel_size'] for f in frames],
        down_expand_ratios=[f.get('mv_expand_ratio', 4) for f in frames],
        fusion=fusions.pop(),
        use_pe=pes.pop())


def official_kwargs_to_mmevo(official: Mapping) -> dict:
    """Map an official ``edgeformer`` model (its ``opts`` and, for custom models, the
    ``config_override`` that replaced ``get_configuration(opts)``) to mmevo configs.

    Returns:
        dict: ``backbone`` (kwargs of :class:`mmevo.models.EdgeFormer`) and ``head`` (kwargs of
        :class:`mmevo.models.EdgeFormerClsHead`).
    """
    opts = dict(official['kwargs']['opts'])
    for key, value in _FIXED_OPTS.items():
        if opts.get(key, value) != value:
            raise ConversionError(f'official option {key}={opts[key]!r} has no mmevo port '
                                  f'(supported: {value!r})')
    scale = opts.get('model.classification.edge.scale', 'scale_s')
    if scale not in _SCALES:
        raise ConversionError(f'unknown official scale {scale!r}; known: {sorted(_SCALES)}')
    config = official.get('config_override')
    if config is not None:
        arch = _arch_from_config(config, scale)
        exp_factor = config.get('last_layer_exp_factor', 4)
        first = config['layer3']
        drop, ffn_drop = first.get('dropout', 0.1), first.get('ffn_dropout', 0.)
    else:
        from mmevo.models import EdgeFormer
        arch = EdgeFormer.parse_arch(_SCALES[scale])
        arch['fusion'] = opts.get('model.classification.edge.fusion', 'concat')
        arch['use_pe'] = bool(opts.get('model.classification.edge.use_pe', True))
        exp_factor, drop, ffn_drop = 4, 0.1, 0.
    norm = opts.get('model.normalization.name', 'batch_norm_2d')
    norm_cfg = dict(type='SyncBN' if 'sync' in norm else 'BN',
                    momentum=opts.get('model.normalization.momentum', 0.1))
    backbone = dict(arch=arch, drop_rate=drop, ffn_drop_rate=ffn_drop, norm_cfg=norm_cfg)
    last = arch['channels'][-1]
    head = dict(
        num_classes=opts.get('model.classification.n_classes', 1000),
        in_channels=last,
        mid_channels=min(exp_factor * last, 960),
        dropout=opts.get('model.classification.classifier_dropout', 0.2),
        norm_cfg=norm_cfg)
    return dict(backbone=backbone, head=head)


def build_official(official: Mapping, **backbone_overrides) -> nn.Module:
    """The mmevo port of an official EdgeFormer (parity fixture or manifest entry)."""
    from mmevo.models import EdgeFormer, EdgeFormerClsHead
    from mmevo.testing import ClassifierUnderTest
    cfg = official_kwargs_to_mmevo(official)
    backbone = EdgeFormer(**{**cfg['backbone'], **backbone_overrides})
    return ClassifierUnderTest(backbone, EdgeFormerClsHead(**cfg['head']))


def stage_outputs(model: nn.Module, x: torch.Tensor):
    """What the fixtures store: the outputs of official ``layer_3..layer_5`` (stages 1-3)."""
    backbone = model.backbone
    saved = backbone.out_indices
    backbone.out_indices = (1, 2, 3)
    try:
        return backbone(x)
    finally:
        backbone.out_indices = saved


EDGEFORMER_CONVERTER = register_converter(
    FamilyConverter(
        family='edgeformer',
        model_name='EdgeFormer',
        backbone='EdgeFormer',
        convert=convert_edgeformer,
        build_official=build_official,
        fixture_families=('edgeformer', ),
        ignored_official_keys=lambda key: key.startswith(ALIAS_PREFIX),
        stage_outputs=stage_outputs))


# Copyright (c) mmevo contributors. All rights reserved.
"""Official DWNet checkpoints (``Atten4Vis/DemystifyLocalViT``) -> mmevo.

Covers the classification models (static, dynamic and i-dynamic DWNet; Swin-style
``{'model': ...}`` checkpoints or raw state dicts) and the detection / segmentation backbone
(mmdet / mmseg checkpoints holding it under ``state_dict`` with ``backbone.`` keys, or a raw
backbone state dict; the necks and heads are dropped).

Official layout -> mmevo: ``layers.{i}.blocks.{j}`` is ``stages.{i}.{j}`` (``{j + 1}`` for
``i > 0``: those stages start with the patch merging, which the official code keeps at the end of
the previous layer as ``layers.{i-1}.downsample``); ``attn2conv`` is ``dw``; ``mlp`` and the
block's pre-norm ``bn`` are ``ffn.{fc1, fc2, norm}`` (the Linear weights become 1x1 convolution
weights); the classifier's ``norm`` / ``head`` are ``head.{norm, fc}``; the downstream output
norms ``norm0..3`` are ``out_norms.0..3``.
"""
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

#: Rules inside one block (``layers.{i}.blocks.{j}.``).
_BLOCK_RULES = [
    # i-dynamic kernel generator (Sequential conv / BN / ReLU, then conv)
    (r'attn2conv\.conv\.conv1\.0\.', 'dw.conv.conv1.'),
    (r'attn2conv\.conv\.conv1\.1\.', 'dw.conv.norm.'),
    (r'attn2conv\.conv\.conv2\.0\.', 'dw.conv.conv2.'),
    # dynamic kernel generator
    (r'attn2conv\.conv\.conv1\.weight$', 'dw.conv.conv1.weight'),
    (r'attn2conv\.conv\.bn\.', 'dw.conv.norm.'),
    (r'attn2conv\.conv\.conv2\.(weight|bias)$', r'dw.conv.conv2.\1'),
    # static kernel, or the dynamic kernels' shared bias
    (r'attn2conv\.conv\.(weight|bias)$', r'dw.conv.\1'),
    (r'attn2conv\.(conv0|bn0|bn|conv2|bn2)\.', r'dw.\1.'),
    (r'mlp\.(fc1|fc2)\.', r'ffn.\1.'),
    (r'bn\.', 'ffn.norm.'),
]


def _block(match) -> str:
    stage, block = int(match[1]), int(match[2])
    return f'backbone.stages.{stage}.{block + (stage > 0)}.'


DWNET_RULES = [
    (r'patch_embed\.(proj|norm)\.', r'backbone.stem.\1.'),
    Scope(r'layers\.(\d)\.blocks\.(\d+)\.', _block, _BLOCK_RULES),
    (r'layers\.(\d)\.downsample\.(reduction|norm)\.',
     lambda m: f'backbone.stages.{int(m[1]) + 1}.0.{m[2]}.'),
    (r'norm(\d)\.', r'backbone.out_norms.\1.'),
    (r'norm\.', 'head.norm.'),
    (r'head\.', 'head.fc.'),
]

_FFN_WEIGHTS = ('.ffn.fc1.weight', '.ffn.fc2.weight')


#: Parts of the official Cascade Mask R-CNN / UperNet checkpoints besides the backbone: their
#: mmdet 2.x / mmseg 0.x names are those of mmdet 3.x / mmseg 1.x.
TASK_PREFIXES = ('neck.', 'rpn_head.', 'roi_head.', 'decode_head.', 'auxiliary_head.')


def convert_dwnet(checkpoint: Mapping, with_heads: bool = False) -> Dict[str, torch.Tensor]:
    """Convert an official DWNet checkpoint to mmevo keys (``backbone.*``, ``head.*``).

    Args:
        checkpoint (dict): A raw state dict, a classification checkpoint holding it under
            ``'model'``, or an mmdet / mmseg checkpoint holding the detector or segmentor under
            ``'state_dict'`` (its ``backbone.`` keys are taken).
        with_heads (bool): For a detector / segmentor: also keep its neck and heads
            (:data:`TASK_PREFIXES`, names unchanged), to evaluate the released model with the
            mmevo config. Defaults to False (the backbone only).

    Raises:
        ConversionError: the checkpoint holds keys that no official DWNet has (named), e.g.
            ``absolute_pos_embed`` of the unpublished ``ape=True`` models.
    """
    full = extract_state_dict(checkpoint, ('state_dict', 'model'))
    state_dict = strip_prefix(full, 'backbone.')
    require_prefixes(state_dict, ['patch_embed.', 'layers.'], 'DWNet')
    out = rename_keys(state_dict, DWNET_RULES, 'DWNet')
    if with_heads:
        if state_dict is full:
            raise ConversionError('with_heads needs a detector / segmentor checkpoint (keys '
                                  "under 'backbone.' and its heads), got a backbone")
        others = [k for k in full if not k.startswith('backbone.')]
        unknown = [k for k in others if not k.startswith(TASK_PREFIXES)]
        if unknown:
            raise ConversionError(f'{len(unknown)} keys are not keys of an official DWNet '
                                  f'detector / segmentor: {unknown[:8]}')
        out.update((k, full[k]) for k in others)
    for key, value in out.items():
        if key.endswith(_FFN_WEIGHTS) and value.dim() == 2:
            out[key] = value[:, :, None, None]
    return out


#: The latest official commit, whose classification ``DWBlock`` replaces the dynamic
#: convolution by the static one unless ``inhomogeneous=True``.
_BROKEN_DYNAMIC_COMMIT = 'ce7c0b7'


def official_kwargs_to_mmevo(official: Mapping) -> dict:
    """Map an official DWNet's constructor (the ``official`` entry of a parity fixture or
    manifest variant: ``kwargs``, ``file``, ``commit``) to mmevo configs.

    The classification model of the latest official commit builds a *static* model for
    ``dynamic=True, inhomogeneous=False`` (spec: the HEAD bug); the port of that commit's model
    is static too. The first commit and the downstream files build the dynamic model.

    Returns:
        dict: ``backbone`` (kwargs of :class:`mmevo.models.DWNet`) and ``head`` (kwargs of
        :class:`mmevo.models.DWNetClsHead`, or None for the downstream backbone).
    """
    kw = dict(official['kwargs'])
    downstream = 'out_indices' in kw
    unsupported = {k: kw[k] for k, default in (('ape', False), ('patch_norm', True),
                                               ('patch_size', 4)) if kw.get(k, default) != default}
    if unsupported:
        raise ConversionError(f'unsupported official DWNet settings {unsupported} (the published '
                              f'models use ape=False, patch_norm=True, patch_size=4)')
    for key in ('ape', 'patch_norm', 'patch_size', 'img_size', 'pretrain_img_size',
                'use_checkpoint', 'norm_layer'):
        kw.pop(key, None)
    arch = dict(embed_dims=kw.pop('embed_dim', 96), depths=list(kw.pop('depths', [2, 2, 6, 2])),
                window_size=kw.pop('window_size', 7), mlp_ratio=kw.pop('mlp_ratio', 4.),
                drop_path_rate=kw.pop('drop_path_rate', 0.2 if downstream else 0.1))
    dynamic = kw.pop('dynamic', False)
    inhomogeneous = kw.pop('inhomogeneous', False)
    heads = kw.pop('inhomo_heads', None)
    if heads is not None and all(h is not None for h in heads):
        arch['inhomo_heads'] = list(heads)
    if dynamic and not inhomogeneous and not downstream \
            and str(official.get('commit', '')).startswith(_BROKEN_DYNAMIC_COMMIT):
        dynamic = False
    backbone = dict(arch=arch, in_channels=kw.pop('in_chans', 3),
                    drop_rate=kw.pop('drop_rate', 0.), dynamic=dynamic,
                    inhomogeneous=dynamic and inhomogeneous)
    num_classes = kw.pop('num_classes', 1000)
    if downstream:
        backbone.update(out_indices=tuple(kw.pop('out_indices')), pad_to_window=True,
                        out_norm_cfg=dict(type='BN'), frozen_stages=kw.pop('frozen_stages', -1))
    if kw:
        raise ConversionError(f'unknown official DWNet kwargs: {sorted(kw)}')
    if downstream:
        return dict(backbone=backbone, head=None)
    head = dict(num_classes=num_classes, in_channels=arch['embed_dims'] * 8)
    return dict(backbone=backbone, head=head if num_classes > 0 else None)


def build_official(official: Mapping, **backbone_overrides) -> nn.Module:
    """The mmevo port of an official DWNet (parity fixture or manifest entry)."""
    from mmevo.models.backbones import DWNet
    from mmevo.models.heads import DWNetClsHead
    from mmevo.testing import ClassifierUnderTest
    cfg = official_kwargs_to_mmevo(official)
    head = DWNetClsHead(**cfg['head']) if cfg['head'] else None
    return ClassifierUnderTest(DWNet(**{**cfg['backbone'], **backbone_overrides}), head)


DWNET_CONVERTER = register_converter(
    FamilyConverter(
        family='dwnet',
        model_name='DWNet',
        backbone='DWNet',
        convert=convert_dwnet,
        build_official=build_official,
        fixture_families=('dwnet', 'dwnet_det'),
        cli_options=[(['--with-heads'], dict(
            action='store_true', dest='with_heads',
            help='detector / segmentor checkpoints: keep the neck and heads (mmdet 2.x / mmseg '
            '0.x names are the 3.x / 1.x ones) to evaluate the released model'))]))

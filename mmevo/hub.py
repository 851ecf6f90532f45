# Copyright (c) mmevo contributors. All rights reserved.
"""mmevo's backbones from plain PyTorch: :func:`list_models` and :func:`create_backbone`.

Neither imports mmdet, mmseg or mmpretrain::

    import mmevo
    mmevo.list_models('eat*')                      # ['eatformer_base', ..., 'eatformer_tiny']
    backbone = mmevo.create_backbone('eatformer_small', out_indices=(0, 1, 2, 3),
                                     checkpoint='eatformer_small_official.pth')
    feats = backbone(images)                       # tuple of NCHW maps, strides 4/8/16/32

A checkpoint may be an mmevo checkpoint (a converted one, or a classifier / detector / segmentor
checkpoint with ``backbone.*`` keys) or an official checkpoint of the family, which goes through
the family's registered converter on the fly. Files are read with ``weights_only=True``
(:func:`mmevo.utils.checkpoint.read_checkpoint`): nothing in them runs.
"""
import fnmatch
import inspect
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch.nn as nn


def _backbone_classes() -> Dict[str, type]:
    import mmevo.models  # noqa: F401  (registers the backbones)
    from mmevo.models.backbones import StagedBackbone
    from mmevo.registry import MODELS
    return {name: cls for name, cls in MODELS.module_dict.items()
            if isinstance(cls, type) and issubclass(cls, StagedBackbone)}


def _canonical_archs(cls) -> List[str]:
    """One name per arch of ``cls.arch_zoo``: the longest of its aliases."""
    by_settings: Dict[int, str] = {}
    for name, settings in cls.arch_zoo.items():
        best = by_settings.get(id(settings))
        if best is None or len(name) > len(best):
            by_settings[id(settings)] = name
    return sorted(by_settings.values())


def _model_names() -> Dict[str, Tuple[type, str]]:
    return {f'{cls_name.lower()}_{arch}': (cls, arch)
            for cls_name, cls in _backbone_classes().items()
            for arch in _canonical_archs(cls)}


def list_models(pattern: str = '*') -> List[str]:
    """Names of mmevo's published backbones (``'<family>_<arch>'``), filtered by a glob.

    Args:
        pattern (str): ``fnmatch`` pattern, e.g. ``'eatformer_*'``. Defaults to all.
    """
    return sorted(n for n in _model_names() if fnmatch.fnmatch(n, pattern.lower()))


def create_backbone(name: str,
                    *,
                    out_indices: Optional[Union[int, Sequence[int]]] = None,
                    checkpoint: Optional[str] = None,
                    allow_nonfinite: bool = False,
                    **kwargs) -> nn.Module:
    """Build an mmevo backbone by name, optionally with weights.

    Args:
        name (str): A name of :func:`list_models` (``'eatformer_small'``), or a backbone class
            name (``'EATFormer'``) with ``arch=...`` in ``kwargs``.
        out_indices (int | Sequence[int], optional): Stages to return. Defaults to the
            family's feature stages (``feature_indices``): every stage of a hierarchical
            backbone, four evenly spaced blocks of a columnar one (EAT).
        checkpoint (str, optional): An mmevo checkpoint (``backbone.*`` keys, or a backbone's
            own keys) or an official checkpoint of the family (converted on the fly).
        allow_nonfinite (bool): Accept NaN/Inf weights. Defaults to False.
        **kwargs: Other constructor arguments of the backbone (``frozen_stages``, ...).

    Raises:
        KeyError: an unknown name (with the close matches).
    """
    names = _model_names()
    classes = _backbone_classes()
    if name.lower() in names:
        cls, arch = names[name.lower()]
        kwargs.setdefault('arch', arch)
    elif name in classes:
        cls = classes[name]
    else:
        import difflib
        close = difflib.get_close_matches(name.lower(), list(names) + list(classes), n=3)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ''
        raise KeyError(f'{name!r} is not an mmevo backbone.{hint} See mmevo.list_models().')
    if out_indices is None:
        arch = kwargs.get('arch', inspect.signature(cls).parameters['arch'].default)
        out_indices = cls.feature_indices(cls.parse_arch(arch))
    backbone = cls(out_indices=out_indices, **kwargs)
    if checkpoint is not None:
        load_backbone_weights(backbone, checkpoint, allow_nonfinite=allow_nonfinite)
    return backbone


def load_backbone_weights(backbone: nn.Module, checkpoint: str,
                          allow_nonfinite: bool = False) -> None:
    """Load an mmevo or official checkpoint into ``backbone`` strictly (see
    :func:`create_backbone`)."""
    from mmevo.utils.checkpoint import load_weights, read_checkpoint, weights_of
    from mmevo.utils.converters import get_converter
    ckpt = read_checkpoint(checkpoint, map_location='cpu', allow_nonfinite=allow_nonfinite)
    own = backbone.state_dict().keys()
    keys = [k[7:] if k.startswith('module.') else k for k in weights_of(ckpt)]
    prefix = 'backbone.' if any(k.startswith('backbone.') for k in keys) else None
    if prefix is None and not own & set(keys):
        # not an mmevo checkpoint: the family's converter turns it into one
        converted = get_converter(type(backbone).__name__).convert(ckpt)
        ckpt, prefix = dict(state_dict=converted), 'backbone.'
    load_weights(backbone, ckpt, prefix=prefix, source=checkpoint,
                 allow_nonfinite=allow_nonfinite)

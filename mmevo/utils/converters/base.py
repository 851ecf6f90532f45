# Copyright (c) mmevo contributors. All rights reserved.
"""Shared machinery of the official-checkpoint converters (``tools/model_converters``).

A converter is an ordered list of regex rules ``(pattern, replacement)`` over official keys; every
key must match a rule (or be explicitly dropped), otherwise the checkpoint is not of the expected
model and conversion stops with the unmatched keys named. The output is
``dict(state_dict={'backbone.*': ..., 'head.*': ...}, meta=...)``, which loads with
``weights_only=True`` as an mmpretrain classifier checkpoint and through
``init_cfg=dict(type='Pretrained', prefix='backbone.')`` in mmdet/mmseg.
"""
import re
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch

Rule = Tuple[str, Optional[str]]  # replacement None: drop the key

#: Where training frameworks keep the weights inside a checkpoint dict, in lookup order.
STATE_DICT_KEYS = ('state_dict', 'model', 'net', 'module')


class ConversionError(ValueError):
    """The checkpoint is not one the converter knows (wrong model, missing keys, ...)."""


def extract_state_dict(checkpoint: dict,
                       keys: Sequence[str] = STATE_DICT_KEYS) -> Dict[str, torch.Tensor]:
    """Find the state dict in a raw state dict or a training checkpoint.

    Leading ``module.`` (DataParallel) prefixes are stripped.
    """
    if not isinstance(checkpoint, dict):
        raise ConversionError(f'expected a dict checkpoint, got {type(checkpoint).__name__}')
    state_dict = checkpoint
    for key in keys:
        if isinstance(checkpoint.get(key), dict):
            state_dict = checkpoint[key]
            break
    tensors = {k: v for k, v in state_dict.items() if torch.is_tensor(v)}
    if not tensors:
        raise ConversionError(f'no tensors found in the checkpoint (top-level keys: '
                              f'{sorted(checkpoint)[:10]}); expected a state dict or a dict '
                              f'holding one under {list(keys)}')
    return OrderedDict((k[7:] if k.startswith('module.') else k, v) for k, v in tensors.items())


def rename_keys(state_dict: Dict[str, torch.Tensor],
                rules: Iterable[Rule],
                model_name: str) -> 'OrderedDict[str, torch.Tensor]':
    """Apply the first matching rule to every key; unmatched keys are an error."""
    compiled = [(re.compile(p), r) for p, r in rules]
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    unmatched: List[str] = []
    for key, value in state_dict.items():
        for pattern, repl in compiled:
            if pattern.match(key):
                if repl is not None:
                    out[pattern.sub(repl, key, count=1)] = value
                break
        else:
            unmatched.append(key)
    if unmatched:
        more = f' (+{len(unmatched) - 8} more)' if len(unmatched) > 8 else ''
        raise ConversionError(f'{len(unmatched)} keys are not keys of an official {model_name} '
                              f'checkpoint: {unmatched[:8]}{more}. Is this a checkpoint of '
                              f'another model?')
    return out


def save_converted(state_dict: Dict[str, torch.Tensor], path: str, meta: dict) -> None:
    """Save ``dict(state_dict=..., meta=...)`` with plain tensors and JSON-able meta only."""
    torch.save(
        dict(state_dict=OrderedDict((k, v.detach().clone()) for k, v in state_dict.items()),
             meta=meta), path)

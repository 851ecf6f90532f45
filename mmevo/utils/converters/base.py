# Copyright (c) mmevo contributors. All rights reserved.
"""The rule engine shared by the official-checkpoint converters.

A converter is an ordered list of rules over official keys. A rule is ``(pattern, replacement)``:
the regex ``pattern`` matched at the start of a key, its match replaced by ``replacement`` (a
template with ``\\1`` groups, a callable of the match, or None to drop the key) and the rest of
the key kept. A :class:`Scope` matches a key prefix (say ``stage3.2.``), rewrites it and hands
the rest of the key to its own rules, so block-level rules are written once, relative to the
block. Every key must match a rule, otherwise the checkpoint is not of the expected model and
conversion stops with the unmatched keys named.

The output is ``dict(state_dict={'backbone.*': ..., 'head.*': ...}, meta=...)``, which loads with
``weights_only=True`` as an mmpretrain classifier checkpoint and through
``init_cfg=dict(type='Pretrained', prefix='backbone.')`` in mmdet/mmseg.
"""
import os
import os.path as osp
import re
import tempfile
from collections import OrderedDict
from typing import Callable, Dict, List, Mapping, NamedTuple, Sequence, Tuple, Union

import torch

Replacement = Union[str, Callable[['re.Match'], str], None]
Rule = Tuple[str, Replacement]

#: Where training frameworks keep the weights inside a checkpoint dict, in lookup order.
STATE_DICT_KEYS = ('state_dict', 'model', 'net', 'module')


class ConversionError(ValueError):
    """The checkpoint is not one the converter knows (wrong model, missing keys, ...)."""


class Scope(NamedTuple):
    """Rules applied below a key prefix: ``pattern`` matches the prefix (at the start of the
    key), ``replacement`` rewrites it, ``rules`` rename the rest of the key."""
    pattern: str
    replacement: Replacement
    rules: Sequence[Union[Rule, 'Scope']]


_NO_MATCH = object()


def _expand(match: 're.Match', replacement: Replacement) -> str:
    return replacement(match) if callable(replacement) else match.expand(replacement)


def rename_key(key: str, rules: Sequence[Union[Rule, Scope]]):
    """The new name of ``key`` under ``rules``: a str, None (dropped) or ``_NO_MATCH``."""
    for rule in rules:
        if isinstance(rule, Scope):
            match = re.match(rule.pattern, key)
            if match is None:
                continue
            inner = rename_key(key[match.end():], rule.rules)
            if inner is _NO_MATCH:
                continue
            if inner is None or rule.replacement is None:
                return None
            return _expand(match, rule.replacement) + inner
        pattern, replacement = rule
        match = re.match(pattern, key)
        if match is not None:
            return None if replacement is None else _expand(match, replacement) + key[match.end():]
    return _NO_MATCH


def rename_keys(state_dict: Mapping[str, torch.Tensor],
                rules: Sequence[Union[Rule, Scope]],
                model_name: str) -> 'OrderedDict[str, torch.Tensor]':
    """Apply the first matching rule to every key; unmatched keys are an error."""
    out: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
    unmatched: List[str] = []
    for key, value in state_dict.items():
        new = rename_key(key, rules)
        if new is _NO_MATCH:
            unmatched.append(key)
        elif new is not None:
            out[new] = value
    if unmatched:
        more = f' (+{len(unmatched) - 8} more)' if len(unmatched) > 8 else ''
        raise ConversionError(f'{len(unmatched)} keys are not keys of an official {model_name} '
                              f'checkpoint: {unmatched[:8]}{more}. Is this a checkpoint of '
                              f'another model?')
    return out


def extract_state_dict(checkpoint: Mapping,
                       keys: Sequence[str] = STATE_DICT_KEYS) -> Dict[str, torch.Tensor]:
    """Find the state dict in a raw state dict or a training checkpoint.

    Leading ``module.`` (DataParallel) prefixes are stripped.
    """
    if not isinstance(checkpoint, Mapping):
        raise ConversionError(f'expected a dict checkpoint, got {type(checkpoint).__name__}')
    state_dict = checkpoint
    for key in keys:
        if isinstance(checkpoint.get(key), Mapping):
            state_dict = checkpoint[key]
            break
    tensors = {k: v for k, v in state_dict.items() if torch.is_tensor(v)}
    if not tensors:
        raise ConversionError(f'no tensors found in the checkpoint (top-level keys: '
                              f'{sorted(map(str, checkpoint))[:10]}); expected a state dict or '
                              f'a dict holding one under {list(keys)}')
    return OrderedDict((k[7:] if k.startswith('module.') else k, v) for k, v in tensors.items())


def strip_prefix(state_dict: Mapping[str, torch.Tensor],
                 prefix: str) -> Mapping[str, torch.Tensor]:
    """Keys under ``prefix`` without it, when any key has it (e.g. a detector's
    ``backbone.``); ``state_dict`` itself otherwise."""
    if not any(k.startswith(prefix) for k in state_dict):
        return state_dict
    return OrderedDict((k[len(prefix):], v) for k, v in state_dict.items()
                       if k.startswith(prefix))


def save_converted(state_dict: Mapping[str, torch.Tensor], path: str, meta: dict) -> None:
    """Write ``dict(state_dict=..., meta=...)`` (plain tensors, JSON-able meta) atomically.

    The file is written to a temporary file beside ``path`` and renamed over it only when the
    write has finished: an interrupted conversion leaves ``path`` absent or as it was.
    """
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    payload = dict(
        state_dict=OrderedDict((k, v.detach().clone()) for k, v in state_dict.items()),
        meta=meta)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f'.{osp.basename(path)}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def count_parameters(state_dict: Mapping[str, torch.Tensor],
                     skip: Sequence[str] = ('running_mean', 'running_var')) -> int:
    """Floating-point elements of a state dict other than BatchNorm statistics."""
    return sum(v.numel() for k, v in state_dict.items()
               if v.is_floating_point() and not k.endswith(tuple(skip)))


def require_prefixes(state_dict: Mapping[str, torch.Tensor], prefixes: Sequence[str],
                     model_name: str) -> None:
    """Raise :class:`ConversionError` unless some key starts with one of ``prefixes``."""
    if not any(k.startswith(tuple(prefixes)) for k in state_dict):
        raise ConversionError(f'not an official {model_name} checkpoint: no key starts with '
                              f'{" or ".join(prefixes)} (found e.g. {list(state_dict)[:4]})')

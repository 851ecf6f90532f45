# Copyright (c) mmevo contributors. All rights reserved.
from typing import Dict, Iterable, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm


class StateDictMismatchError(KeyError):
    """A checkpoint's keys do not match the model (shown without ``KeyError``'s quoting)."""

    def __str__(self) -> str:
        return str(self.args[0])


class BaseBackbone(BaseModule):
    """What every mmevo backbone shares: ``norm_eval``, ``frozen_stages`` kept across
    ``train()``, and strict loading of ``init_cfg=dict(type='Pretrained', ...)``.

    MMEngine's ``PretrainedInit`` loads non-strictly and only logs missing or unexpected keys (the
    classic silently-random-backbone bug); here any missing, unexpected or mis-shaped key is an
    error that names the keys.

    Subclasses implement ``_freeze_stages()`` and set ``self.frozen_stages`` / ``self.norm_eval``.
    """
    frozen_stages: int = -1
    norm_eval: bool = False

    def _freeze_stages(self) -> None:
        raise NotImplementedError

    @staticmethod
    def _freeze(module: nn.Module) -> None:
        module.eval()
        for param in module.parameters():
            param.requires_grad = False

    def train(self, mode: bool = True) -> 'BaseBackbone':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    @staticmethod
    def _normalize_indices(indices: Union[int, Sequence[int]], num: int,
                           what: str = 'out_indices') -> Tuple[int, ...]:
        if isinstance(indices, int):
            indices = [indices]
        out = []
        for index in indices:
            if not -num <= index < num:
                raise ValueError(f'{what} {tuple(indices)} out of range for {num} stages')
            out.append(index % num)
        return tuple(sorted(set(out)))

    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            self.load_pretrained(
                cfg['checkpoint'],
                prefix=cfg.get('prefix'),
                map_location=cfg.get('map_location', 'cpu'))
            self._is_init = True
            return
        super().init_weights()

    def load_pretrained(self,
                        checkpoint: str,
                        prefix: Optional[str] = None,
                        map_location: str = 'cpu') -> None:
        """Load a checkpoint strictly (``weights_only``), optionally taking keys under ``prefix``.

        Raises:
            StateDictMismatchError (KeyError): no key under ``prefix``, or missing / unexpected keys.
            ValueError: keys whose shapes differ from this model's.
        """
        ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location=map_location)
        state_dict = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
        state_dict = {k[7:] if k.startswith('module.') else k: v for k, v in state_dict.items()}
        if prefix:
            if not prefix.endswith('.'):
                prefix += '.'
            selected = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
            if not selected:
                raise StateDictMismatchError(f'{checkpoint}: no key starts with the prefix {prefix!r}; found '
                               f'e.g. {sorted(state_dict)[:3]}. Official checkpoints must first '
                               f'go through tools/model_converters/<family>_to_mmevo.py')
            state_dict = selected
        check_state_dict(self, state_dict, source=checkpoint)
        self.load_state_dict(state_dict, strict=True)


def _abbrev(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    more = f' ... (+{len(keys) - limit} more)' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def check_state_dict(model: nn.Module, state_dict: Dict[str, torch.Tensor],
                     source: str = 'state_dict') -> None:
    """Raise a clear error unless ``state_dict`` matches ``model`` key for key and shape."""
    own = model.state_dict()
    missing = own.keys() - state_dict.keys()
    unexpected = state_dict.keys() - own.keys()
    name = type(model).__name__
    if missing or unexpected:
        lines = [f'{source} does not match {name}: {len(missing)} missing and '
                 f'{len(unexpected)} unexpected keys.']
        if missing:
            lines.append(f'  missing: {_abbrev(missing)}')
        if unexpected:
            lines.append(f'  unexpected: {_abbrev(unexpected)}')
        lines.append('  Is it a checkpoint of another model or arch? Official checkpoints must '
                     'be converted with tools/model_converters/<family>_to_mmevo.py first.')
        raise StateDictMismatchError('\n'.join(lines))
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                  for k, v in state_dict.items() if tuple(v.shape) != tuple(own[k].shape)]
    if mismatched:
        raise ValueError(f'{source} has {len(mismatched)} tensors whose shapes do not match '
                         f'{name} (a checkpoint of another arch?): ' + '; '.join(mismatched[:6]))

# Copyright (c) mmevo contributors. All rights reserved.
"""One registry of family converters: official checkpoint -> mmevo, and official model -> port.

Every family registers a :class:`FamilyConverter` in its converter module. The CLI
(``tools/model_converters/<family>_to_mmevo.py``), :func:`mmevo.create_backbone` and the
parametrized parity / manifest tests find converters here, so a new family adds an entry, not
code in those places.
"""
import importlib
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn

#: Converter modules imported on first use of the registry (one per family: a new family adds
#: its module here).
CONVERTER_MODULES = ('mmevo.utils.converters.eatformer',
                     'mmevo.utils.converters.dwnet',
                     'mmevo.utils.converters.eat',
                     'mmevo.utils.converters.groupmixformer',
                     'mmevo.utils.converters.edgeformer',
                     'mmevo.utils.converters.gcc_convnext')


@dataclass
class FamilyConverter:
    """How one family's official checkpoints and constructor arguments map to mmevo.

    Args:
        family (str): Family name (``'eatformer'``), as in ``<family>_to_mmevo.py``.
        model_name (str): The official model's name, for messages (``'EATFormer'``).
        backbone (str): The mmevo backbone class name (``'EATFormer'``).
        convert (callable): ``convert(checkpoint, **options) -> state dict`` with ``backbone.*``
            (and ``head.*``) keys; ``checkpoint`` is a raw state dict or a training checkpoint.
        build_official (callable): ``build_official(official, **backbone_overrides) ->
            nn.Module``: the port of an official model, from the ``official`` entry of a parity
            fixture or of the manifest (constructor and kwargs), as
            :class:`mmevo.testing.ClassifierUnderTest` (``backbone`` + ``head``, or no head
            for a downstream backbone); ``backbone_overrides`` replace backbone kwargs.
        fixture_families (tuple[str]): ``family`` values of parity fixtures and manifest
            entries this converter handles.
        cli_options (list): Extra ``(flags, argparse kwargs)`` of the CLI; their ``dest`` are
            passed to ``convert`` as keyword arguments.
        ignored_official_keys (callable): ``key -> bool`` for official keys a port drops on
            purpose (e.g. index buffers); documented by the converter.
        stage_outputs (callable, optional): ``stage_outputs(model, x) -> maps`` to compare with
            a fixture's ``stage_outputs``; default: every stage's output of ``model.backbone``
            (:func:`mmevo.testing.parity.all_stage_outputs`).
        port_params (callable): ``port_params(entry) -> int``: the parameter count the port
            must have, from a fixture (``num_params``) or manifest entry (``params``).
    """
    family: str
    model_name: str
    backbone: str
    convert: Callable[..., Dict[str, torch.Tensor]]
    build_official: Callable[[Mapping], nn.Module]
    fixture_families: Tuple[str, ...] = ()
    cli_options: List[Tuple[Sequence[str], dict]] = field(default_factory=list)
    ignored_official_keys: Callable[[str], bool] = lambda key: False
    stage_outputs: Optional[Callable[[nn.Module, torch.Tensor], Sequence[torch.Tensor]]] = None
    port_params: Callable[[Mapping], int] = lambda entry: entry.get('num_params',
                                                                    entry.get('params'))


_REGISTRY: Dict[str, FamilyConverter] = {}
_LOADED = False


def register_converter(converter: FamilyConverter) -> FamilyConverter:
    """Add a family's converter (one per family)."""
    if converter.family in _REGISTRY and _REGISTRY[converter.family] is not converter:
        raise KeyError(f'a converter for {converter.family!r} is already registered')
    _REGISTRY[converter.family] = converter
    return converter


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    for module in CONVERTER_MODULES:
        importlib.import_module(module)
    _LOADED = True


def converters() -> Dict[str, FamilyConverter]:
    """Every registered converter, by family."""
    _load_all()
    return dict(_REGISTRY)


def get_converter(family: str) -> FamilyConverter:
    """The converter of ``family`` (``'eatformer'``), or of a fixture / manifest family
    (``'eatformer_det'``), or of a backbone class name (``'EATFormer'``)."""
    for conv in converters().values():
        if family in (conv.family, conv.backbone) or family in conv.fixture_families:
            return conv
    raise KeyError(f'no converter for {family!r}; known families: {sorted(_REGISTRY)}')

# Copyright (c) mmevo contributors. All rights reserved.
"""Official checkpoints -> mmevo: a rule engine (:mod:`.base`), one converter per family
registered in :mod:`.registry`, and the CLI of ``tools/model_converters`` (:mod:`.cli`)."""
from .base import (
                   ConversionError,
                   Scope,
                   extract_state_dict,
                   rename_keys,
                   save_converted,
                   strip_prefix,
)
from .eatformer import EATFORMER_RULES, convert_eatformer, official_kwargs_to_mmevo
from .registry import FamilyConverter, converters, get_converter, register_converter

__all__ = [
    'ConversionError', 'Scope', 'extract_state_dict', 'rename_keys', 'save_converted',
    'strip_prefix', 'EATFORMER_RULES', 'convert_eatformer', 'official_kwargs_to_mmevo',
    'FamilyConverter', 'converters', 'get_converter', 'register_converter'
]

# Copyright (c) mmevo contributors. All rights reserved.
from .base import (ConversionError, extract_state_dict, rename_keys,
                   save_converted)
from .eatformer import (EATFORMER_RULES, convert_eatformer,
                        official_kwargs_to_mmevo)

__all__ = [
    'ConversionError', 'extract_state_dict', 'rename_keys', 'save_converted',
    'EATFORMER_RULES', 'convert_eatformer', 'official_kwargs_to_mmevo'
]

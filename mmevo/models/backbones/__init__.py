# Copyright (c) mmevo contributors. All rights reserved.
from .base_backbone import BaseBackbone, StateDictMismatchError, check_state_dict
from .eatformer import EATBlock, EATFormer

__all__ = ['BaseBackbone', 'StateDictMismatchError', 'check_state_dict', 'EATBlock', 'EATFormer']

# Copyright (c) mmevo contributors. All rights reserved.
from .base_backbone import StagedBackbone
from .eatformer import EATBlock, EATFormer
from .groupmixformer import GMABlock, GroupMixFormer

__all__ = ['StagedBackbone', 'EATBlock', 'EATFormer', 'GMABlock', 'GroupMixFormer']

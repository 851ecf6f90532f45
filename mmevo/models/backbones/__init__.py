# Copyright (c) mmevo contributors. All rights reserved.
from .base_backbone import StagedBackbone
from .dwnet import DWNet
from .eatformer import EATBlock, EATFormer
from .groupmixformer import GMABlock, GroupMixFormer

__all__ = ['StagedBackbone', 'DWNet', 'EATBlock', 'EATFormer', 'GMABlock', 'GroupMixFormer']

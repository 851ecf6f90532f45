# Copyright (c) mmevo contributors. All rights reserved.
from .base_backbone import StagedBackbone
from .dwnet import DWNet
from .eat import EAT
from .eatformer import EATBlock, EATFormer
from .edgeformer import EdgeFormer
from .gcc_convnext import GCCConvNeXt
from .groupmixformer import GMABlock, GroupMixFormer

__all__ = [
    'StagedBackbone', 'DWNet', 'EAT', 'EATBlock', 'EATFormer', 'EdgeFormer', 'GCCConvNeXt',
    'GMABlock', 'GroupMixFormer'
]

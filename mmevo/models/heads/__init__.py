# Copyright (c) mmevo contributors. All rights reserved.
"""mmpretrain-compatible heads; registered only when mmpretrain is installed."""
try:
    import mmpretrain  # noqa: F401
except ImportError:  # pragma: no cover - mmpretrain is optional for detection/segmentation
    __all__ = []
else:
    from .dwnet_head import DWNetClsHead
    from .eatformer_head import EATFormerClsHead
    from .groupmixformer_head import GroupMixFormerClsHead
    __all__ = ['DWNetClsHead', 'EATFormerClsHead', 'GroupMixFormerClsHead']

# Copyright (c) mmevo contributors. All rights reserved.
"""mmpretrain-compatible heads; registered only when mmpretrain is installed."""
try:
    import mmpretrain  # noqa: F401
except ImportError:  # pragma: no cover - mmpretrain is optional for detection/segmentation
    __all__ = []
else:
    from .class_attention_head import ClassAttentionHead
    from .dwnet_head import DWNetClsHead
    from .eatformer_head import EATFormerClsHead
    from .edgeformer_head import EdgeFormerClsHead
    from .groupmixformer_head import GroupMixFormerClsHead
    __all__ = ['ClassAttentionHead', 'DWNetClsHead', 'EATFormerClsHead', 'EdgeFormerClsHead',
               'GroupMixFormerClsHead']

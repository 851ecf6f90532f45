# Copyright (c) mmevo contributors. All rights reserved.
"""mmevo's models. Importing this package registers the backbones; the mmpretrain heads are
registered when ``mmevo.models.heads`` is imported (the registry does so on first use), so plain
PyTorch use (``mmevo.create_backbone``) never imports mmpretrain, mmdet or mmseg."""
import importlib

from .backbones import *  # noqa: F401,F403


def __getattr__(name: str):
    # ``from mmevo.models import EATFormerClsHead`` imports the heads (and mmpretrain) lazily
    if not name.startswith('_') and name != 'heads':
        heads = importlib.import_module('.heads', __name__)
        if name in heads.__all__:
            return getattr(heads, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')

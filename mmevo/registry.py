# Copyright (c) mmevo contributors. All rights reserved.
"""mmevo's registries: children of MMEngine's root registries with scope ``'mmevo'``.

Configs of mmpretrain, mmdet and mmseg name mmevo modules with the scope prefix, e.g.
``backbone=dict(type='mmevo.EATFormer', ...)``. The prefix makes MMEngine import
``mmevo.registry`` and then the ``locations`` below, so no ``custom_imports`` is needed.
Inside mmevo, blocks are plain classes built directly, never through a registry, because a build
under another library's default scope would search that library's registry.
"""
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry

#: Backbones, necks and heads.
MODELS = Registry(
    'model', parent=MMENGINE_MODELS, scope='mmevo', locations=['mmevo.models'])
#: Model wrappers (the CPU-capable distributed wrapper).
MODEL_WRAPPERS = Registry(
    'model_wrapper',
    parent=MMENGINE_MODEL_WRAPPERS,
    scope='mmevo',
    locations=['mmevo.engine'])
#: Hooks.
HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope='mmevo', locations=['mmevo.engine'])
#: Optimizer wrapper constructors (layer-wise learning-rate decay).
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mmevo',
    locations=['mmevo.engine'])

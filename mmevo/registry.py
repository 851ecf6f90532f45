# Copyright (c) mmevo contributors. All rights reserved.
"""mmevo's registries: children of MMEngine's root registries with scope ``'mmevo'``.

Configs of mmpretrain, mmdet and mmseg name mmevo modules with the scope prefix, e.g.
``backbone=dict(type='mmevo.EATFormer', ...)``. The prefix makes MMEngine import
``mmevo.registry`` and then the ``locations`` below, so no ``custom_imports`` is needed.
Inside mmevo, blocks are plain classes built directly, never through a registry, because a build
under another library's default scope would search that library's registry.
"""
import difflib
from typing import List, Optional, Type

from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import Registry


class MMEvoRegistry(Registry):
    """A :class:`~mmengine.registry.Registry` whose misses name the close matches.

    MMEngine's ``get`` returns ``None`` for an unknown name and the caller raises a
    ``KeyError`` that names neither the registry that was searched (a lookup of
    ``'mmevo.EATFomer'`` from the mmdet scope reports mmdet's registry) nor what was meant.
    Here an unknown plain name raises a ``KeyError`` naming this registry and the registered
    names closest to the one asked for. Dotted names (``'mmevo.models.EATFormer'``) still
    return ``None``, so MMEngine can go on to import them as a module path.
    """

    def get(self, key: str) -> Optional[Type]:
        obj = super().get(key)
        if obj is not None:
            return obj
        scope, real_key = self.split_scope_key(key)
        if scope not in (None, self.scope) or '.' in real_key:
            return None
        raise KeyError(self._missing_message(real_key, search_parents=scope is None))

    def _candidates(self, search_parents: bool) -> List[str]:
        names = set(self.module_dict)
        parent = self.parent if search_parents else None
        while parent is not None:
            names.update(parent.module_dict)
            parent = parent.parent
        return sorted(names)

    def _missing_message(self, name: str, search_parents: bool) -> str:
        candidates = self._candidates(search_parents)
        lowered = {c.lower(): c for c in candidates}
        matches = difflib.get_close_matches(name, candidates, n=3, cutoff=0.6)
        # 'eatformer' -> 'EATFormer': case slips are common and difflib scores them low.
        if name.lower() in lowered and lowered[name.lower()] not in matches:
            matches.insert(0, lowered[name.lower()])
        msg = f"'{name}' is not in the {self.scope}::{self.name} registry."
        if matches:
            msg += ' Did you mean ' + ' or '.join(f"'{m}'" for m in matches) + '?'
        else:
            own = sorted(self.module_dict)
            msg += f' Registered in {self.scope}::{self.name}: {own}.'
        return msg


#: Backbones, necks and heads.
MODELS = MMEvoRegistry(
    'model',
    parent=MMENGINE_MODELS,
    scope='mmevo',
    locations=['mmevo.models.backbones', 'mmevo.models.heads'])
#: Model wrappers (the CPU-capable distributed wrapper).
MODEL_WRAPPERS = MMEvoRegistry(
    'model_wrapper',
    parent=MMENGINE_MODEL_WRAPPERS,
    scope='mmevo',
    locations=['mmevo.engine'])
#: Hooks.
HOOKS = MMEvoRegistry(
    'hook', parent=MMENGINE_HOOKS, scope='mmevo', locations=['mmevo.engine'])
#: Optimizer wrapper constructors (layer-wise learning-rate decay).
OPTIM_WRAPPER_CONSTRUCTORS = MMEvoRegistry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope='mmevo',
    locations=['mmevo.engine'])

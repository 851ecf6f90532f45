# Copyright (c) mmevo contributors. All rights reserved.
"""mmevo: evolution-inspired vision backbones for the OpenMMLab 2.x stack.

Importing mmevo is cheap and imports none of mmdet, mmseg or mmpretrain. It

* lets configs inherit mmevo configs with ``_base_ = 'mmevo::<path>'`` (MMEngine only accepts a
  fixed list of package prefixes), and
* makes MMEngine's checkpoint loading work on torch>=2.6 by allow-listing exactly the objects
  MMEngine checkpoints contain (``weights_only`` stays on; see :mod:`mmevo.utils.checkpoint`).
"""
from .hub import create_backbone, list_models
from .utils.checkpoint import register_safe_checkpoint_loading
from .utils.setup_env import register_mmevo_config_prefix
from .version import __version__, version_info

register_mmevo_config_prefix()
register_safe_checkpoint_loading()

__all__ = ['__version__', 'version_info', 'create_backbone', 'list_models']

# Copyright (c) mmevo contributors. All rights reserved.
from .checkpoint import (UnsafeCheckpointError, load_checkpoint_file,
                         register_safe_checkpoint_loading)
from .setup_env import register_mmevo_config_prefix

__all__ = [
    'UnsafeCheckpointError', 'load_checkpoint_file', 'register_safe_checkpoint_loading',
    'register_mmevo_config_prefix'
]

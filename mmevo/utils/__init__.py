# Copyright (c) mmevo contributors. All rights reserved.
from .checkpoint import (
                         UnsafeCheckpointError,
                         load_checkpoint_file,
                         register_safe_checkpoint_loading,
)
from .setup_env import TASK_SCOPES, register_mmevo_config_prefix, setup_default_scope

__all__ = [
    'UnsafeCheckpointError', 'load_checkpoint_file', 'register_safe_checkpoint_loading',
    'register_mmevo_config_prefix', 'setup_default_scope', 'TASK_SCOPES'
]

# Copyright (c) mmevo contributors. All rights reserved.
from .checkpoint import (
                         UnsafeCheckpointError,
                         load_checkpoint_file,
                         register_safe_checkpoint_loading,
)
from .data_check import DataNotFoundError, check_data
from .setup_env import (
                        TASK_SCOPES,
                        ignore_pkg_resources_warning,
                        register_mmevo_config_prefix,
                        setup_default_scope,
)

__all__ = [
    'UnsafeCheckpointError', 'load_checkpoint_file', 'register_safe_checkpoint_loading',
    'register_mmevo_config_prefix', 'setup_default_scope', 'TASK_SCOPES',
    'ignore_pkg_resources_warning', 'DataNotFoundError', 'check_data'
]

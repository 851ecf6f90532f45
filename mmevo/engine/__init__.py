# Copyright (c) mmevo contributors. All rights reserved.
from .model_wrappers import MMDistributedDataParallel
from .optimizers import LayerDecayOptimWrapperConstructor
from .runner import build_runner, init_cpu_dist

__all__ = [
    'MMDistributedDataParallel', 'LayerDecayOptimWrapperConstructor', 'build_runner',
    'init_cpu_dist'
]

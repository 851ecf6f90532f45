# Copyright (c) mmevo contributors. All rights reserved.
"""A distributed data-parallel wrapper that also runs on CPU processes."""
from typing import Any

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.model import MMDistributedDataParallel as _MMDDP
from mmengine.model import revert_sync_batchnorm

from mmevo.registry import MODEL_WRAPPERS


def _has_sync_bn(module: nn.Module) -> bool:
    return any('SyncBatchNorm' in type(m).__name__ for m in module.modules())


@MODEL_WRAPPERS.register_module()
class MMDistributedDataParallel(_MMDDP):
    """MMEngine's ``MMDistributedDataParallel`` that also wraps CPU modules.

    MMEngine 0.10.7's Runner always passes ``device_ids=[LOCAL_RANK]``, which
    :class:`torch.nn.parallel.DistributedDataParallel` rejects for a module whose parameters
    live on the CPU. For such a module this wrapper passes ``device_ids=None`` (and no
    ``output_device``), and reverts SyncBN layers to BN, since ``SyncBatchNorm`` only runs on
    accelerators; each process then normalises with its own batch statistics. On a GPU it
    behaves exactly like its parent.

    Use it with ``model_wrapper_cfg=dict(type='mmevo.MMDistributedDataParallel')``;
    :func:`mmevo.engine.build_runner` selects it by itself for CPU runs.

    Args:
        module (nn.Module): The model to wrap.
        detect_anomalous_params (bool): See MMEngine's wrapper. Defaults to False.
        **kwargs: Passed on to ``DistributedDataParallel``.
    """

    def __init__(self,
                 module: nn.Module,
                 detect_anomalous_params: bool = False,
                 **kwargs: Any) -> None:
        param = next(module.parameters(), None)
        on_cpu = param is None or param.device.type == 'cpu'
        if on_cpu:
            kwargs['device_ids'] = None
            kwargs.pop('output_device', None)
            if _has_sync_bn(module):
                print_log(
                    'SyncBatchNorm does not run on CPU: reverted to BatchNorm, '
                    'each process normalises with its own batch statistics.',
                    logger='current')
                module = revert_sync_batchnorm(module)
        super().__init__(
            module=module, detect_anomalous_params=detect_anomalous_params, **kwargs)

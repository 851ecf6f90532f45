# Copyright (c) mmevo contributors. All rights reserved.
"""Build MMEngine Runners that also work on CPU-only machines.

MMEngine 0.10.7 assumes an accelerator as soon as a launcher is used: ``init_dist`` calls
``torch.cuda.set_device`` and the Runner wraps the model with ``device_ids=[LOCAL_RANK]``.
:func:`build_runner` initialises a ``gloo`` process group itself when no accelerator is present
(the Runner then skips ``init_dist``) and selects :class:`mmevo.engine.MMDistributedDataParallel`,
which wraps CPU modules. Single-process runs need nothing: the Runner already reverts SyncBN to
BN when it does not wrap the model.
"""
import datetime
import logging
import os
import subprocess
from typing import Optional

import torch.distributed as dist
from mmengine.config import Config
from mmengine.device import get_device
from mmengine.logging import print_log
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

_MMENGINE_DDP = ('MMDistributedDataParallel', 'mmengine.MMDistributedDataParallel')
CPU_MODEL_WRAPPER = 'mmevo.MMDistributedDataParallel'


def _set_env_from_slurm(port: Optional[int]) -> None:
    """Translate Slurm's variables into the ``env://`` ones, as MMEngine does for GPUs."""
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    if port is not None:
        os.environ['MASTER_PORT'] = str(port)
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        node_list = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(
            f'scontrol show hostname {node_list} | head -n1')


def _set_env_from_mpi() -> None:
    os.environ['RANK'] = os.environ['OMPI_COMM_WORLD_RANK']
    os.environ['WORLD_SIZE'] = os.environ['OMPI_COMM_WORLD_SIZE']
    os.environ['LOCAL_RANK'] = os.environ['OMPI_COMM_WORLD_LOCAL_RANK']
    os.environ.setdefault('MASTER_PORT', '29500')
    if 'MASTER_ADDR' not in os.environ:
        raise KeyError('The environment variable MASTER_ADDR is not set')


def init_cpu_dist(launcher: str,
                  timeout: Optional[float] = None,
                  port: Optional[int] = None) -> None:
    """Initialise a ``gloo`` process group for CPU processes.

    Args:
        launcher (str): ``'pytorch'`` (``torchrun``), ``'slurm'`` or ``'mpi'``.
        timeout (float, optional): Collective timeout in seconds
            (``env_cfg.dist_cfg.timeout``). Defaults to torch's.
        port (int, optional): Master port for Slurm (``env_cfg.dist_cfg.port``).
    """
    if dist.is_initialized():
        return
    if launcher == 'slurm':
        _set_env_from_slurm(port)
    elif launcher == 'mpi':
        _set_env_from_mpi()
    elif launcher != 'pytorch':
        raise ValueError(f"Invalid launcher {launcher!r}; expected 'pytorch', 'slurm' or 'mpi'")
    kwargs = {}
    if timeout is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=timeout)
    dist.init_process_group(backend='gloo', init_method='env://', **kwargs)


def _select_cpu_model_wrapper(cfg: Config) -> None:
    wrapper_cfg = cfg.get('model_wrapper_cfg')
    if wrapper_cfg is None:
        # What the Runner would build without a model_wrapper_cfg, made CPU-capable.
        cfg.model_wrapper_cfg = dict(
            type=CPU_MODEL_WRAPPER,
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    elif wrapper_cfg.get('type', 'MMDistributedDataParallel') in _MMENGINE_DDP:
        wrapper_cfg['type'] = CPU_MODEL_WRAPPER
    elif wrapper_cfg.get('type') != CPU_MODEL_WRAPPER:
        print_log(
            f"model_wrapper_cfg.type={wrapper_cfg.get('type')!r} is kept on CPU; "
            'it must accept a CPU module.',
            logger='current',
            level=logging.WARNING)


def build_runner(cfg: Config) -> Runner:
    """Build the Runner of ``cfg``, making multi-process runs work without an accelerator.

    With ``cfg.launcher`` other than ``'none'`` and only a CPU, this initialises a ``gloo``
    process group and wraps the model with :class:`mmevo.engine.MMDistributedDataParallel`
    (``device_ids=None``, SyncBN reverted to BN). Everything else is MMEngine's: a config with
    ``runner_type`` is built through the ``RUNNERS`` registry, otherwise ``Runner.from_cfg``.

    Args:
        cfg (Config): A complete training or test config.

    Returns:
        Runner: The built runner.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher != 'none' and get_device() == 'cpu':
        dist_cfg = cfg.get('env_cfg', {}).get('dist_cfg', {}) or {}
        init_cpu_dist(launcher, timeout=dist_cfg.get('timeout'), port=dist_cfg.get('port'))
        _select_cpu_model_wrapper(cfg)
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)

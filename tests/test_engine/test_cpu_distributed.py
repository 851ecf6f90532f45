# Copyright (c) mmevo contributors. All rights reserved.
"""mmevo's CPU path for multi-process runs: gloo process group and the CPU-capable wrapper."""
import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import BaseModel
from mmengine.optim import OptimWrapper

from mmevo.engine import MMDistributedDataParallel
from mmevo.engine.runner import CPU_MODEL_WRAPPER, _select_cpu_model_wrapper
from mmevo.registry import MODEL_WRAPPERS


class SyncBNModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 8)
        self.bn = nn.SyncBatchNorm(8)

    def forward(self, inputs, mode='tensor'):
        out = self.bn(self.fc(inputs))
        return dict(loss=out.pow(2).mean()) if mode == 'loss' else out


@pytest.fixture
def gloo_group(tmp_path):
    assert not dist.is_initialized()
    dist.init_process_group(
        'gloo', init_method=f'file://{tmp_path}/rendezvous', rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_wraps_cpu_module_and_reverts_sync_bn(gloo_group):
    model = SyncBNModel()
    # What MMEngine's Runner passes: device_ids of the local rank.
    wrapped = MODEL_WRAPPERS.build(
        dict(type='mmevo.MMDistributedDataParallel'),
        default_args=dict(module=model, device_ids=[0]))
    assert isinstance(wrapped, MMDistributedDataParallel)
    assert wrapped.device_ids is None
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in wrapped.modules())
    optim = OptimWrapper(torch.optim.SGD(wrapped.parameters(), lr=0.1))
    before = model.fc.weight.detach().clone()
    losses = wrapped.train_step(dict(inputs=torch.randn(4, 4)), optim)
    assert torch.isfinite(losses['loss'])
    assert not torch.equal(before, wrapped.module.fc.weight)


def test_selects_cpu_wrapper_in_config():
    cfg = Config(dict(find_unused_parameters=True))
    _select_cpu_model_wrapper(cfg)
    assert cfg.model_wrapper_cfg == dict(
        type=CPU_MODEL_WRAPPER, broadcast_buffers=False, find_unused_parameters=True)

    cfg = Config(dict(model_wrapper_cfg=dict(type='MMDistributedDataParallel',
                                             detect_anomalous_params=True)))
    _select_cpu_model_wrapper(cfg)
    assert cfg.model_wrapper_cfg == dict(type=CPU_MODEL_WRAPPER, detect_anomalous_params=True)

    custom = dict(type='MMSeparateDistributedDataParallel')
    cfg = Config(dict(model_wrapper_cfg=custom))
    _select_cpu_model_wrapper(cfg)
    assert cfg.model_wrapper_cfg == custom

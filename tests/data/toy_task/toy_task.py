# Copyright (c) mmevo contributors. All rights reserved.
"""A tiny regression task for testing the tools: model, dataset, metric and a probe hook.

Imported by ``toy_regression.py`` through ``custom_imports`` (this folder must be on
``PYTHONPATH``). Everything is registered in MMEngine's root registries and the config uses
``default_scope='mmengine'``, so runs import none of mmdet, mmseg or mmpretrain.
"""
import json
import os.path as osp

import torch
import torch.nn as nn
from mmengine.dist import get_dist_info
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel, is_model_wrapper
from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS
from torch.utils.data import Dataset


@DATASETS.register_module()
class ToyDataset(Dataset):
    """``size`` fixed samples ``x ~ N(0, 1)^4``, ``y = x . w + 0.5``."""

    def __init__(self, size: int = 32) -> None:
        gen = torch.Generator().manual_seed(1234)
        self.inputs = torch.randn(size, 4, generator=gen)
        self.targets = self.inputs @ torch.tensor([1., -2., 3., 0.5]) + 0.5
        self.metainfo = dict(classes=('value', ), task='toy regression')

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, idx: int) -> dict:
        return dict(inputs=self.inputs[idx], targets=self.targets[idx])


@MODELS.register_module()
class ToyRegressor(BaseModel):
    """Linear -> (Sync)BatchNorm -> ReLU -> Linear."""

    def __init__(self, sync_bn: bool = False, hidden: int = 8) -> None:
        super().__init__()
        norm = nn.SyncBatchNorm if sync_bn else nn.BatchNorm1d
        self.net = nn.Sequential(
            nn.Linear(4, hidden), norm(hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, inputs, targets=None, mode: str = 'tensor'):
        preds = self.net(inputs).squeeze(-1)
        if mode == 'loss':
            return dict(loss=((preds - targets)**2).mean())
        if mode == 'predict':
            return [dict(pred=p, target=t) for p, t in zip(preds, targets)]
        return preds


@METRICS.register_module()
class ToyMSE(BaseMetric):

    def process(self, data_batch, data_samples) -> None:
        self.results.extend(((s['pred'] - s['target'])**2).item() for s in data_samples)

    def compute_metrics(self, results: list) -> dict:
        return dict(mse=sum(results) / len(results))


@HOOKS.register_module()
class ParamProbeHook(Hook):
    """Writes what each rank sees before and after training to ``probe_<when>_rank<r>.json``."""

    def _dump(self, runner, when: str) -> None:
        rank, world_size = get_dist_info()
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        record = dict(
            rank=rank,
            world_size=world_size,
            iter=runner.iter,
            wrapper=type(runner.model).__module__ + '.' + type(runner.model).__name__,
            sync_bn_left=any(isinstance(m, nn.SyncBatchNorm) for m in model.modules()),
            params={k: v.detach().double().flatten().tolist()
                    for k, v in model.state_dict().items() if v.is_floating_point()})
        with open(osp.join(runner.work_dir, f'probe_{when}_rank{rank}.json'), 'w') as f:
            json.dump(record, f)

    def before_train(self, runner) -> None:
        self._dump(runner, 'before')

    def after_train(self, runner) -> None:
        self._dump(runner, 'after')

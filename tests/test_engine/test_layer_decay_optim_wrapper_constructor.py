# Copyright (c) mmevo contributors. All rights reserved.
import pytest
import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper

from mmevo.engine import LayerDecayOptimWrapperConstructor

BASE_LR, BASE_WD, RATE = 1e-3, 0.05, 0.5


class StandInBackbone(nn.Module):
    """stem (layer 0), two stages (layers 1, 2); anything else is the last layer (3)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3)
        self.stages = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)) for _ in range(2)])
        self.gamma = nn.Parameter(torch.ones(4))

    def get_layer_depth(self, param_name: str, prefix: str = ''):
        num_layers = 4
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        if name.startswith('stem'):
            return 0, num_layers
        if name.startswith('stages.'):
            return int(name.split('.')[1]) + 1, num_layers
        return num_layers - 1, num_layers


class Detector(nn.Module):
    """Like an mmdet/mmseg model: no get_layer_depth of its own."""

    def __init__(self):
        super().__init__()
        self.backbone = StandInBackbone()
        self.neck = nn.Conv2d(4, 4, 1)
        self.head = nn.Linear(4, 2)


def _build(model, **paramwise):
    cfg = dict(
        optimizer=dict(type='AdamW', lr=BASE_LR, weight_decay=BASE_WD),
        constructor='mmevo.LayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=RATE, **paramwise))
    return build_optim_wrapper(model, cfg)


def _settings(optim_wrapper) -> dict:
    """param name -> (lr, weight decay)."""
    return {
        name: (group['lr'], group['weight_decay'])
        for group in optim_wrapper.optimizer.param_groups for name in group['param_names']
    }


def test_depth_from_backbone_of_detector():
    model = Detector()
    got = _settings(_build(model, norm_decay_mult=0., bias_decay_mult=0., flat_decay_mult=0.))
    assert set(got) == {n for n, _ in model.named_parameters()}
    lr = {layer: BASE_LR * RATE**(3 - layer) for layer in range(4)}
    assert got['backbone.stem.weight'] == (lr[0], BASE_WD)
    assert got['backbone.stem.bias'] == (lr[0], 0.)
    assert got['backbone.stages.0.0.weight'] == (lr[1], BASE_WD)
    assert got['backbone.stages.1.1.weight'] == (lr[2], 0.)  # BN weight: norm_decay_mult
    assert got['backbone.gamma'] == (lr[3], 0.)  # 1-D: flat_decay_mult
    assert got['neck.weight'] == (lr[3], BASE_WD)
    assert got['head.weight'] == (lr[3], BASE_WD)
    assert got['head.bias'] == (lr[3], 0.)


def test_model_get_layer_depth_wins_and_custom_keys():

    class Classifier(Detector):

        def get_layer_depth(self, name):
            return (0, 2) if name.startswith('backbone') else (1, 2)

    got = _settings(_build(Classifier(), custom_keys={'head': dict(lr_mult=10., decay_mult=0.)}))
    assert got['backbone.stages.1.0.weight'] == (BASE_LR * RATE, BASE_WD)
    assert got['neck.weight'] == (BASE_LR, BASE_WD)
    assert got['head.weight'] == (BASE_LR * 10, 0.)


def test_frozen_parameters_are_left_out():
    model = Detector()
    model.backbone.stem.requires_grad_(False)
    names = set(_settings(_build(model)))
    assert 'backbone.stem.weight' not in names and 'head.weight' in names


def test_errors():
    with pytest.raises(TypeError, match='no get_layer_depth'):
        _build(nn.Sequential(nn.Linear(2, 2)))
    with pytest.raises(ValueError, match='layer_decay_rate'):
        LayerDecayOptimWrapperConstructor(
            dict(optimizer=dict(type='SGD', lr=0.1)), dict(layer_decay_rate=1.5))
    with pytest.raises(ValueError, match='dwconv_decay_mult'):
        LayerDecayOptimWrapperConstructor(
            dict(optimizer=dict(type='SGD', lr=0.1, weight_decay=0.1)),
            dict(layer_decay_rate=0.9, dwconv_decay_mult=0.))


def test_with_eatformer_backbone():
    """mmevo's own backbone: every parameter placed, the stem decayed most."""
    from mmevo.registry import MODELS
    backbone = MODELS.build(
        dict(type='mmevo.EATFormer',
             arch=dict(depths=[1, 1, 1, 1], embed_dims=[16, 16, 24, 32], dim_heads=[8, 8, 4, 8],
                       op_names=[['conv'], ['conv'], ['msa', 'conv'], ['msa', 'conv']])))
    model = nn.Module()
    model.backbone = backbone
    model.head = nn.Linear(32, 2)
    wrapper = _build(model)
    groups = wrapper.optimizer.param_groups
    assert sum(len(g['params']) for g in groups) == len(list(model.parameters()))
    layers = {g['layer_id'] for g in groups}
    assert min(layers) == 0 and max(layers) == 5  # stem, 4 blocks, everything else
    stem = [g for g in groups if any(n.startswith('backbone.stem') for n in g['param_names'])]
    assert stem and all(g['lr'] == pytest.approx(BASE_LR * RATE**5) for g in stem)

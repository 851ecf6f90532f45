# Copyright (c) mmevo contributors. All rights reserved.
"""``tools/analysis_tools/get_flops.py`` and ``mmevo.utils.flops``: the published FLOPs.

Reference numbers: ../shared/spec/architectures.md §0 (published README values and fvcore
measurements of the official code) and §1.8 (the EATFormer-Base note).
"""
import functools
import io
import json
import os.path as osp
import sys
from contextlib import redirect_stdout

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from tool_helpers import REPO, assert_ok, run_tool

sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
import get_flops  # noqa: E402

from mmevo.utils.flops import ATTENTION_KEY, analyze_flops  # noqa: E402

CLS_CONFIG = osp.join(REPO, 'configs', 'eatformer', 'eatformer-{}_8xb128_in1k.py')
MASK_RCNN_T = osp.join(REPO, 'configs', 'mask_rcnn', 'eatformer_t_1x.py')

# variant: (params M of the official code, fvcore GFLOPs of the official code, README GFLOPs)
PUBLISHED = {
    'mobile': (1.893, 0.360, 0.36),
    'lite': (3.536, 0.916, 0.91),
    'tiny': (6.122, 1.416, 1.41),
    'mini': (11.114, 2.283, 2.29),
    'small': (24.324, 4.320, 4.32),
    'medium': (39.900, 7.054, 7.05),
    'base': (49.057, 8.744, 8.94),
}
# Downstream backbones at 800x1280 (Mask R-CNN): params M, all ops G, without attention G.
DOWNSTREAM = {
    'tiny': (5.864, 35.94, 28.76),
    'small': (23.874, 92.20, 88.31),
    'base': (48.543, 186.03, 179.07),
}


def _rel(a: float, b: float) -> float:
    return abs(a - b) / b


pytestmark = pytest.mark.usefixtures('one_thread')


@functools.lru_cache(maxsize=None)
def _run(argv: tuple) -> tuple:
    out = io.StringIO()
    with redirect_stdout(out):
        result = get_flops.main(list(argv))
    return result, out.getvalue()


def _flops(argv) -> dict:
    return _run(tuple(argv))[0]


@pytest.mark.parametrize('variant', list(PUBLISHED))
def test_classification_flops_match_published(variant):
    params_m, fvcore_g, readme_g = PUBLISHED[variant]
    out, text = _run((CLS_CONFIG.format(variant), ))
    flops_g = out['flops'] / 1e9
    assert _rel(out['params'] / 1e6, params_m) < 2e-3, out['params']
    assert _rel(flops_g, fvcore_g) < 0.01, (flops_g, fvcore_g)
    if variant != 'base':  # README Base = global stage-3 attention, see the next test
        assert _rel(flops_g, readme_g) < 0.01, (flops_g, readme_g)
    assert out['input_shape'] == [1, 3, 224, 224] or out['input_shape'] == (1, 3, 224, 224)
    # Every variant has attention in stages 3-4, so the mmcv-convention figure is smaller.
    assert 0 < out['flops_without_attention'] < out['flops']
    assert out['by_operator'][ATTENTION_KEY] > 0
    assert f"{out['params'] / 1e6:.3f} M ({out['params']:,})" in text
    assert f"{flops_g:.3f} G" in text


def test_base_readme_flops_are_global_stage3_attention():
    """Released Base (window 7 everywhere) = 8.744 G; README's 8.94 G = global stage 3."""
    cfg = CLS_CONFIG.format('base')
    released = _flops([cfg])['flops'] / 1e9
    global_s3 = _flops([cfg, '--cfg-options', 'model.backbone.window_size=[7,7,14,7]'])
    assert _rel(released, 8.744) < 0.01
    assert _rel(global_s3['flops'] / 1e9, 8.944) < 0.01
    assert _rel(global_s3['flops'] / 1e9, 8.94) < 0.01
    assert _rel(released, 8.94) > 0.015  # the released code does not give the README number
    # Only attention matrix products change: the rest of the network is the same.
    assert global_s3['flops_without_attention'] == _flops([cfg])['flops_without_attention']


def test_params_equal_the_model():
    from mmengine.config import Config

    from mmevo.utils.flops import build_model_from_cfg
    out = _flops([CLS_CONFIG.format('tiny')])
    model = build_model_from_cfg(Config.fromfile(CLS_CONFIG.format('tiny')))
    assert out['params'] == sum(p.numel() for p in model.parameters())
    backbone = _flops([CLS_CONFIG.format('tiny'), '--backbone-only'])
    assert backbone['params'] == sum(p.numel() for p in model.backbone.parameters())
    assert backbone['flops'] < out['flops']


def test_downstream_tiny_backbone_800x1280():
    """The published detection numbers leave attention matmuls and grid_sample out (mmcv).

    Counted on the Mask R-CNN Tiny config (backbone only, mmdet's default 800x1280) when it
    exists, else on the backbone built with the official downstream settings.
    """
    params_m, all_g, no_attn_g = DOWNSTREAM['tiny']
    if osp.exists(MASK_RCNN_T):
        out, text = _run((MASK_RCNN_T, '--backbone-only'))
        assert 'w/o attention matmuls' in text
        assert tuple(out['input_shape']) == (1, 3, 800, 1280)  # mmdet default
        params, flops, no_attn = out['params'], out['flops'], out['flops_without_attention']
        grid_sampler = out['by_operator']['grid_sampler']
    else:
        from mmevo.models import EATFormer
        model = EATFormer('tiny', out_indices=(0, 1, 2, 3), window_size=14,
                          global_window_periods=[-1, -1, 3, 2]).eval()
        result, _ = analyze_flops(model, torch.randn(1, 3, 800, 1280))
        params, flops, no_attn = result.params, result.flops, result.flops_without_attention
        grid_sampler = result.by_operator['grid_sampler']
    assert _rel(params / 1e6, params_m) < 2e-3
    assert _rel(flops / 1e9, all_g) < 0.01, flops
    assert _rel(no_attn / 1e9, no_attn_g) < 0.01, no_attn
    assert grid_sampler > 0
    # The whole (small) gap: the official window op applies the output projection to the
    # zero-padded windows before cropping; mmevo crops first. Stage 3 (50x80, padded to 56x84)
    # has 4 windowed blocks of d=96 (blocks 0 and 3 are global), stage 4 (25x40 -> 28x42) one
    # of d=128.
    padded_proj = 4 * (56 * 84 - 50 * 80) * 96**2 + (28 * 42 - 25 * 40) * 128**2
    assert _rel((flops + padded_proj) / 1e9, all_g) < 5e-4
    assert _rel((no_attn + padded_proj) / 1e9, no_attn_g) < 5e-4


def test_mmcv_sampler_counts_like_grid_sample():
    """MD-MSA on mmcv's deformable op: same sampling count, plus the modulation as a conv."""
    from mmevo.models.backbones.eatformer import MDMSA
    from mmevo.models.layers.deform import mmcv_ops_available
    if not mmcv_ops_available():
        pytest.skip('mmcv ops not compiled')
    x = torch.randn(1, 32, 14, 14)
    grid, _ = analyze_flops(MDMSA(32, 16, 7).eval(), x)
    dcn, _ = analyze_flops(MDMSA(32, 16, 7, sampler='mmcv').eval(), x)
    sampled = 4 * 32 * 14 * 14
    assert dcn.by_operator['deform_sampling'] == grid.by_operator['grid_sampler'] == sampled
    assert dcn.by_operator['deform_conv'] == 32 * 14 * 14  # 1x1 depth-wise identity kernel
    assert dcn.flops == grid.flops + dcn.by_operator['deform_conv']
    assert dcn.flops_without_attention == grid.flops_without_attention + \
        dcn.by_operator['deform_conv']


class _Toy(nn.Module):
    """Known counts: SDPA, grid_sample and a conv."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 8, 3, padding=1)

    def forward(self, x):
        y = self.conv(x)  # 1*8*4*9*6*6 = 10368
        q = y.reshape(1, 2, 4, 36).transpose(-1, -2)  # (1, 2 heads, 36 tokens, 4)
        a = F.scaled_dot_product_attention(q, q, q)  # 2 * 2*36*36*4 = 20736
        grid = torch.zeros(1, 6, 6, 2)
        s = F.grid_sample(y, grid, align_corners=True)  # 4 * 8*6*6 = 1152
        return a.sum() + s.sum()


def test_handles_on_a_toy_model():
    result, _ = analyze_flops(_Toy().eval(), torch.randn(1, 4, 6, 6))
    assert result.by_operator == {ATTENTION_KEY: 20736, 'conv': 10368, 'grid_sampler': 1152}
    assert result.flops == 20736 + 10368 + 1152
    assert result.flops_without_attention == 10368
    assert result.params == 8 * 4 * 9 + 8


def test_cli_writes_json(tmp_path):
    out_json = str(tmp_path / 'flops.json')
    proc = run_tool(['analysis_tools/get_flops.py', CLS_CONFIG.format('mobile'), '--shape', '64',
                     '--json', out_json], cwd=str(tmp_path), timeout=300)
    assert_ok(proc)
    with open(out_json) as f:
        out = json.load(f)
    assert out['input_shape'] == [1, 3, 64, 64] and out['scope'] == 'mmpretrain'
    assert {'params', 'flops', 'flops_without_attention', 'attention_flops', 'by_operator',
            'uncounted_ops'} <= set(out)
    assert out['flops'] == out['flops_without_attention'] + out['attention_flops']
    assert 'FLOPs w/o attention matmuls and sampling' in proc.stdout

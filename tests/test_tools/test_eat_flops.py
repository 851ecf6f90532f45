# Copyright (c) mmevo contributors. All rights reserved.
"""``tools/analysis_tools/get_flops.py`` on the EAT classification configs gives the official
model's counts.

The paper and README publish no FLOPs; the reference is fvcore on the official code
(../shared/spec/architectures.md §0), and the parameters are the official trainable ones (its
``parameters()`` also holds two integer permutation tensors).
"""
import io
import os.path as osp
import sys
from contextlib import redirect_stdout

import pytest
from tool_helpers import REPO

sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
import get_flops  # noqa: E402

CONFIG = osp.join(REPO, 'configs', 'eat', 'eat-{}_8xb128_in1k{}.py')
# (variant, config suffix, input side): (official trainable params, official fvcore GFLOPs)
OFFICIAL = {
    ('tiny', '', 224): (5_719_912, 1.019),
    ('small', '', 224): (22_055_656, 3.832),
    ('tiny', '-384px', 384): (5_792_872, 3.498),
}


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.mark.parametrize('variant,suffix,side', list(OFFICIAL))
def test_classification_flops_match_the_official_model(variant, suffix, side):
    params, fvcore_g = OFFICIAL[variant, suffix, side]
    with redirect_stdout(io.StringIO()):
        out = get_flops.main([CONFIG.format(variant, suffix), '--shape', str(side)])
    assert out['params'] == params
    assert abs(out['flops'] / 1e9 - fvcore_g) < 5e-4, out['flops']
    # the attention products are counted: 12 blocks x 2 products x N^2 x C/2 (global path)
    # and 2 class-attention blocks x 2 products x N x C, for N tokens of C channels
    tokens, dims = (side // 16)**2, {'tiny': 192, 'small': 384}[variant]
    attention = out['flops'] - out['flops_without_attention']
    assert attention == 12 * 2 * tokens**2 * dims // 2 + 2 * 2 * tokens * dims

# Copyright (c) mmevo contributors. All rights reserved.
"""``tools/analysis_tools/get_flops.py`` on the GroupMixFormer classification configs reproduces
the published FLOPs.

Reference numbers: ../shared/spec/architectures.md §0 (the official README and fvcore counts of
the official code). The README gives 0.1 G: M's 1.3497 G is published as 1.4 G, the others are
within 1 %. The released L yaml (71.83 M, 38.25 G) is not the published L (70.3 M, 36.1 G): see
configs/groupmixformer/README.md; it is not counted here (a 38 G trace takes ~40 s on 2 cores).
"""
import io
import os.path as osp
import sys
from contextlib import redirect_stdout

import pytest
from tool_helpers import REPO

sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
import get_flops  # noqa: E402

CONFIG = osp.join(REPO, 'configs', 'groupmixformer', 'groupmixformer-{}_8xb64_in1k.py')
# variant: (params of the official code, its fvcore GFLOPs, README GFLOPs)
PUBLISHED = {
    'mobile': (5_733_120, 1.350, 1.4),
    'tiny': (10_949_152, 3.720, 3.7),
    'small': (22_421_320, 5.164, 5.2),
    'base': (45_827_272, 17.552, 17.6),
}


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.mark.parametrize('variant', list(PUBLISHED))
def test_classification_flops_match_published(variant):
    params, fvcore_g, readme_g = PUBLISHED[variant]
    with redirect_stdout(io.StringIO()):
        out = get_flops.main([CONFIG.format(variant)])
    flops_g = out['flops'] / 1e9
    assert out['params'] == params
    assert abs(flops_g - fvcore_g) / fvcore_g < 1e-3, flops_g
    if variant == 'mobile':  # the official code's 1.3497 G, published as 1.4 G
        assert abs(flops_g - readme_g) < 0.051, flops_g
    else:
        assert abs(flops_g - readme_g) / readme_g < 0.01, flops_g
    # the linear attention's matrix products are counted (fvcore's convention)
    assert 0 < out['flops'] - out['flops_without_attention'] < 0.02 * out['flops']

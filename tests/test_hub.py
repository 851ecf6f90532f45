# Copyright (c) mmevo contributors. All rights reserved.
"""mmevo.list_models / mmevo.create_backbone: the backbones from plain PyTorch."""
import subprocess
import sys
import textwrap

import pytest
import torch

import mmevo
from mmevo.testing import load_parity_fixture
from mmevo.testing.zoo import ZOO
from mmevo.utils.converters import get_converter


def test_list_models_names_every_published_arch():
    names = mmevo.list_models()
    for entry in ZOO.values():
        family = entry.backbone.lower()
        listed = [n[len(family) + 1:] for n in names if n.startswith(family + '_')]
        for arch in entry.archs:  # each published arch under one of its aliases
            assert any(entry.cls.arch_zoo[a] is entry.cls.arch_zoo[arch] for a in listed), arch
    assert mmevo.list_models('eatformer_m*') == ['eatformer_medium', 'eatformer_mini',
                                                 'eatformer_mobile']
    assert names == sorted(names) and len(names) == len(set(names))


def test_create_backbone_official_and_converted_checkpoints(tmp_path):
    """An official checkpoint is converted on the fly; a converted classifier checkpoint loads
    through its ``backbone.`` prefix; both reproduce the official stage maps."""
    fx = load_parity_fixture('eatformer_msa_small')
    official = tmp_path / 'official.pth'
    torch.save({'model': fx['state_dict']}, official)
    converted = tmp_path / 'converted.pth'
    torch.save({'state_dict': get_converter('eatformer').convert(fx['state_dict'])}, converted)
    arch = get_converter('eatformer').build_official(fx['official']).backbone.arch_settings
    expected = fx['stage_outputs'][0]
    for path in (official, converted):
        backbone = mmevo.create_backbone('EATFormer', arch=arch, checkpoint=str(path)).eval()
        assert backbone.out_indices == (0, 1, 2, 3)
        with torch.no_grad():
            outs = backbone(fx['inputs'][0])
        for got, exp in zip(outs, expected):
            torch.testing.assert_close(got, exp, atol=fx['atol'], rtol=fx['rtol'])


def test_create_backbone_returns_the_feature_stages():
    """Every stage of a hierarchical backbone; four evenly spaced blocks of columnar EAT."""
    assert mmevo.create_backbone('eatformer_tiny').out_indices == (0, 1, 2, 3)
    assert mmevo.create_backbone('eat_tiny').out_indices == (2, 5, 8, 11)
    assert mmevo.create_backbone('eat_tiny', out_indices=-1).out_indices == (11, )


def test_create_backbone_by_name_and_kwargs():
    model = mmevo.create_backbone('eatformer_mobile', out_indices=-1, frozen_stages=1)
    assert model.arch_settings['embed_dims'] == [48, 64, 160, 256]
    assert model.out_indices == (3, ) and model.frozen_stages == 1
    assert not any(p.requires_grad for p in model.stem.parameters())
    with pytest.raises(KeyError, match=r"'eatformer_tinny' is not an mmevo backbone.*"
                       r"eatformer_tiny"):
        mmevo.create_backbone('eatformer_tinny')


def test_plain_pytorch_use_imports_no_task_library():
    code = textwrap.dedent('''
        import sys
        import torch
        import mmevo
        model = mmevo.create_backbone('eatformer_mobile').eval()
        with torch.no_grad():
            outs = model(torch.randn(1, 3, 64, 64))
        assert [o.shape[1] for o in outs] == [48, 64, 160, 256]
        loaded = [m for m in ('mmdet', 'mmseg', 'mmpretrain') if m in sys.modules]
        assert not loaded, loaded
        print('ok')
    ''')
    run = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and 'ok' in run.stdout, run.stderr[-3000:]

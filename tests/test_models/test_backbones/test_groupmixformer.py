# Copyright (c) mmevo contributors. All rights reserved.
"""GroupMixFormer: what the conformance matrix (``tests/test_zoo.py``) and the parity suite
(``tests/test_models/test_parity.py``) cannot know: the official yaml archs, GMA's formulas and
shared q/k/v batch statistics, the input-size modes, output norms, the converter and its CLI."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from mmevo.models import GroupMixFormer, GroupMixFormerClsHead
from mmevo.models.layers import ConvRelPosEnc, GroupAggregator, GroupMixAttention
from mmevo.testing import (
    ClassifierUnderTest,
    assert_parity,
    load_parity_fixture,
    load_parity_manifest,
)
from mmevo.utils.checkpoint import StateDictMismatchError, read_checkpoint
from mmevo.utils.converters import ConversionError, get_converter
from mmevo.utils.converters.cli import main as cli_main
from mmevo.utils.converters.groupmixformer import convert_groupmixformer, official_kwargs_to_mmevo

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
MANIFEST = {v['variant']: v for v in load_parity_manifest('groupmixformer')}
ARCHS = {'mobile': 'M', 'tiny': 'T', 'small': 'S', 'base': 'B', 'large': 'L'}
TINY = dict(embed_dims=[20, 30, 40, 60], depths=[1, 1, 2, 1], mlp_ratios=[4, 4, 2, 2])


@pytest.fixture(scope='module')
def fixture():
    return load_parity_fixture('groupmixformer_small')


@pytest.mark.parametrize('arch', ARCHS)
def test_arch_zoo_is_the_official_yaml(arch):
    variant = MANIFEST[f'GroupMixFormer-{ARCHS[arch]}']
    official = variant['official']['kwargs']
    settings = GroupMixFormer.parse_arch(arch)
    assert settings['embed_dims'] == official['embedding_dims']
    assert settings['depths'] == official['serial_depths']
    assert settings['mlp_ratios'] == official['mlp_ratios']
    assert settings['drop_path_rate'] == official['drop_path_rate']
    assert settings['num_heads'] == official['num_heads']
    assert GroupMixFormer.parse_arch(ARCHS[arch].lower()) == settings
    # (test_parity.py::test_converter_covers_manifest checks every variant's parameter count)


def test_large_is_the_released_yaml_not_the_published_model():
    model = ClassifierUnderTest(GroupMixFormer('large'), GroupMixFormerClsHead(1000, 480))
    params = sum(p.numel() for p in model.parameters())
    assert params == MANIFEST['GroupMixFormer-L']['params'] == 71_833_648
    assert abs(params / 1e6 - 70.3) > 1  # the published L has 70.3M


def test_attention_scale_uses_the_full_width_floored():
    """``(C // 8) ** -0.5`` with the full C (60 // 8 = 7), not the 48 attention channels."""
    attn = GroupMixAttention(60)
    assert attn.scale == 7**-0.5
    assert GroupMixAttention(60, qk_scale=0.25).scale == 0.25


def test_linear_attention_is_q_softmax_k_transposed_v():
    torch.manual_seed(0)
    attn = GroupMixAttention(20).double()  # 8 heads of 2 channels on the 16 attention channels
    q, k, v = (torch.randn(2, 16, 4, 6, dtype=torch.float64) for _ in range(3))
    out = attn.linear_attention(q, k, v)
    expected = torch.empty_like(out)
    for h in range(8):
        ch = slice(2 * h, 2 * h + 2)
        qh, kh, vh = (t[:, ch].flatten(2).transpose(1, 2) for t in (q, k, v))  # (B, N, 2)
        context = kh.softmax(dim=1).transpose(1, 2) @ vh  # softmax over the 24 tokens
        expected[:, ch] = (qh @ context).transpose(1, 2).reshape(2, 2, 4, 6)
    torch.testing.assert_close(out, expected)


def test_crpe_kernels_per_head_group():
    crpe = ConvRelPosEnc(head_dim=2, window={3: 2, 5: 3, 7: 3})
    assert [c.kernel_size[0] for c in crpe.convs] == [3, 5, 7]
    assert [c.in_channels for c in crpe.convs] == [4, 6, 6]
    q, v = torch.randn(1, 16, 5, 5), torch.randn(1, 16, 5, 5)
    expected = q[:, 4:10] * crpe.convs[1](v[:, 4:10])
    torch.testing.assert_close(crpe(q, v)[:, 4:10], expected)
    with pytest.raises(ValueError, match='odd kernel sizes'):
        ConvRelPosEnc(2, {4: 8})


def test_aggregators_normalise_q_k_v_with_shared_batch_statistics():
    """Training: each aggregator BatchNorm sees q, k and v as one batch of 3B maps, as the
    official model runs them (statistics shared across q, k and v)."""
    torch.manual_seed(0)
    attn = GroupMixAttention(20).train()
    x = torch.randn(2, 20, 8, 8)
    attn(x)
    qkv = F.linear(x.permute(0, 2, 3, 1), attn.qkv.weight, attn.qkv.bias)  # (B, H, W, 3C)
    q, k, v = qkv.split(20, dim=-1)
    seg0 = torch.cat([q[..., :4], k[..., :4], v[..., :4]], dim=0)  # segment 0 of q, k, v
    momentum = attn.aggregator.norms[0].momentum
    torch.testing.assert_close(attn.aggregator.norms[0].running_mean,
                               momentum * seg0.mean((0, 1, 2)))
    assert not torch.allclose(attn.aggregator.norms[0].running_mean,
                              momentum * q[..., :4].mean((0, 1, 2)), atol=1e-3)

    aggregator = GroupAggregator(20).train()
    stacked = torch.randn(6, 20, 8, 8) + torch.arange(3.).repeat_interleave(2).view(6, 1, 1, 1)
    proxies, local = aggregator(stacked)
    norm = aggregator.norms[0]
    joint = F.hardswish(F.batch_norm(stacked[:, :4], None, None, norm.weight, norm.bias, True))
    torch.testing.assert_close(proxies[:, :4], joint)
    per_q = F.hardswish(F.batch_norm(stacked[:2, :4], None, None, norm.weight, norm.bias, True))
    assert not torch.allclose(proxies[:2, :4], per_q, atol=1e-2)
    assert proxies.shape == (6, 16, 8, 8) and local.shape == (2, 4, 8, 8)


def test_local_branch_concatenates_the_fifth_segments_of_q_k_v():
    aggregator = GroupAggregator(20).eval()
    stacked = torch.randn(6, 20, 4, 4)
    _, local = aggregator(stacked)
    fifth = torch.cat([stacked[0:2, 16:], stacked[2:4, 16:], stacked[4:6, 16:]], dim=1)
    expected = F.hardswish(aggregator.local_norm(aggregator.local_aggregator(fifth)))
    torch.testing.assert_close(local, expected)


def test_classification_rejects_sides_not_multiples_of_32():
    model = GroupMixFormer(TINY).eval()
    match = r'pad_to_multiple=False\) needs input sides that are multiples of 32, got 96x100'
    with torch.no_grad(), pytest.raises(ValueError, match=match):
        model(torch.randn(1, 3, 96, 100))


def test_dense_mode_pads_to_32_and_crops_the_outputs():
    torch.manual_seed(0)
    cls = GroupMixFormer(TINY, out_indices=(0, 1, 2, 3)).eval()
    dense = GroupMixFormer(TINY, out_indices=(0, 1, 2, 3), pad_to_multiple=True).eval()
    dense.load_state_dict(cls.state_dict())
    x = torch.randn(2, 3, 70, 100)
    with torch.no_grad():
        outs = dense(x)
        padded = cls(F.pad(x, (0, 28, 0, 26)))  # 96x128
        aligned = torch.randn(1, 3, 64, 96)
        same = zip(dense(aligned), cls(aligned))
    assert [tuple(o.shape[-2:]) for o in outs] == [(18, 25), (9, 13), (5, 7), (3, 4)]
    assert all(o.is_contiguous() for o in outs)
    for o, p in zip(outs, padded):
        torch.testing.assert_close(o, p[..., :o.shape[-2], :o.shape[-1]])
    for a, b in same:  # multiples of 32 are not padded
        assert torch.equal(a, b)


def test_output_norms_and_loading_a_classification_checkpoint(tmp_path, fixture):
    """The dense backbone loads a converted classification checkpoint strictly, except for its
    output norms, which keep their initialisation; the outputs are normalised per pixel."""
    conv = get_converter('groupmixformer')
    path = str(tmp_path / 'cls.pth')
    torch.save(dict(state_dict=conv.convert(fixture['state_dict'])), path)
    arch = official_kwargs_to_mmevo(fixture['official']['kwargs'])['backbone']['arch']
    dense = GroupMixFormer(arch, out_indices=(0, 1, 2, 3), pad_to_multiple=True,
                           out_norm_cfg=dict(type='LN2d', eps=1e-6),
                           init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    dense.init_weights()
    assert len(dense.out_norms) == 4
    assert torch.equal(dense.out_norms[3].weight, torch.ones(60))
    classifier = conv.build_official(fixture['official'], out_indices=(0, 1, 2, 3))
    classifier.load_state_dict(conv.convert(fixture['state_dict']), strict=True)
    x = fixture['inputs'][0]
    with torch.no_grad():
        normed = dense.eval()(x)
        raw = classifier.backbone.eval()(x)
    for n, r in zip(normed, raw):
        torch.testing.assert_close(n, F.layer_norm(r.permute(0, 2, 3, 1), r.shape[1:2],
                                                   eps=1e-6).permute(0, 3, 1, 2))
    bad = dict(state_dict={**torch.load(path)['state_dict'], 'backbone.extra.weight':
                           torch.zeros(1)})
    torch.save(bad, path)
    with pytest.raises(StateDictMismatchError, match='extra.weight'):
        GroupMixFormer(arch, out_norm_cfg=dict(type='LN2d'),
                       init_cfg=dict(type='Pretrained', checkpoint=path,
                                     prefix='backbone.')).init_weights()


def test_frozen_stages_freeze_output_norms_and_patch_embeddings():
    model = GroupMixFormer(TINY, out_indices=(0, 1, 2, 3), frozen_stages=2,
                           out_norm_cfg=dict(type='BN')).train()
    assert not any(p.requires_grad for p in model.stages[1][0].parameters())  # patch embedding
    assert not model.out_norms[1].training and model.out_norms[2].training
    assert all(p.requires_grad for p in model.stages[2].parameters())


def test_head_folds_its_batchnorm_and_checks_inputs():
    torch.manual_seed(0)
    head = GroupMixFormerClsHead(10, 60).eval()
    head.norm.running_mean.uniform_(-1, 1)
    head.norm.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 60, 3, 5)
    with torch.no_grad():
        expected = head((x, ))
        torch.testing.assert_close(head.fuse()((x, )), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r'\(B, 60, H, W\) maps, got \(2, 30, 3, 5\)'):
        head((torch.randn(2, 30, 3, 5), ))


def test_converter_wrappers_prefixes_and_unknown_keys(fixture):
    state_dict = fixture['state_dict']
    converted = convert_groupmixformer(state_dict)
    assert converted.keys() == convert_groupmixformer(dict(model=state_dict)).keys()
    assert converted.keys() == convert_groupmixformer(dict(state_dict=state_dict)).keys()
    assert {k.split('.')[0] for k in converted} == {'backbone', 'head'}
    detector = {f'backbone.{k}': v for k, v in state_dict.items()
                if not k.startswith(('norm4.', 'head.'))}
    detector['neck.lateral_convs.0.conv.weight'] = torch.zeros(1)
    assert set(convert_groupmixformer(detector)) == {k for k in converted
                                                     if k.startswith('backbone.')}
    with pytest.raises(ConversionError, match=r"groupmixformer_backbone\.0\.gma_stage\.0\."
                                              r"att\.extra\.weight"):
        convert_groupmixformer({**state_dict,
                                'groupmixformer_backbone.0.gma_stage.0.att.extra.weight':
                                torch.zeros(1)})
    with pytest.raises(ConversionError, match='not an official GroupMixFormer'):
        convert_groupmixformer({'conv1.weight': torch.zeros(1)})


def test_official_kwargs():
    cfg = official_kwargs_to_mmevo(dict(embedding_dims=[40, 80, 160, 160],
                                        return_interm_layers=True))
    assert cfg['head'] is None and cfg['backbone']['out_indices'] == (0, 1, 2, 3)
    with pytest.raises(ConversionError, match=r"unknown official GroupMixFormer kwargs: "
                                              r"\['window'\]"):
        official_kwargs_to_mmevo(dict(window=7))


def test_converter_cli(tmp_path, fixture, capsys):
    src, dst = tmp_path / 'official.pth', tmp_path / 'mmevo.pth'
    torch.save(dict(model=fixture['state_dict']), src)
    tool = osp.join(REPO, 'tools', 'model_converters', 'groupmixformer_to_mmevo.py')
    result = subprocess.run([sys.executable, tool, str(src), str(dst)], capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert '94,086 parameters' in result.stdout
    model = get_converter('groupmixformer').build_official(fixture['official'])
    model.load_state_dict(read_checkpoint(str(dst))['state_dict'], strict=True)
    worst = assert_parity(fixture, model)
    assert worst['outputs'] < fixture['atol']
    torch.save(dict(model={**fixture['state_dict'], 'bogus.weight': torch.zeros(1)}), src)
    assert cli_main('groupmixformer', [str(src), str(tmp_path / 'x.pth')]) == 1
    assert 'bogus.weight' in capsys.readouterr().err
    assert not (tmp_path / 'x.pth').exists()


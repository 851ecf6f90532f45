# Copyright (c) mmevo contributors. All rights reserved.
"""DWNet beyond the zoo matrix and the parity fixtures (``tests/test_models/test_parity.py``):
the arch table against the official configs, the official HEAD bug, the converter's checkpoint
layouts, the downstream options (window padding, output norms, loading a classification
checkpoint) and the classification head."""
import contextlib
import copy
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm

from mmevo.models.backbones import DWNet
from mmevo.models.backbones.dwnet import DWNetBlock
from mmevo.models.heads import DWNetClsHead
from mmevo.models.layers import plain_ops
from mmevo.testing import load_parity_fixture, load_parity_manifest
from mmevo.utils.checkpoint import StateDictMismatchError, load_weights
from mmevo.utils.converters import ConversionError, cli, get_converter
from mmevo.utils.converters.dwnet import convert_dwnet, official_kwargs_to_mmevo

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
VARIANTS = {v['variant']: v for v in load_parity_manifest('dwnet')}
HEAD, FIRST = 'ce7c0b7c1385899fd954c60281b24f32257e18ce', '4aa8326263ab10803e796758e7ca36170ea2a05d'
SMALL = dict(embed_dims=8, depths=[1, 1, 2, 1])


@pytest.mark.parametrize('variant,arch,dynamic,inhomogeneous', [
    ('DWNet-tiny', 't', False, False), ('DWNet-base', 'b', False, False),
    ('DWNet-dynamic-tiny', 'tiny', True, False), ('DWNet-dynamic-base', 'base', True, False),
    ('DWNet-i-dynamic-tiny', 'tiny', True, True), ('DWNet-i-dynamic-base', 'base', True, True),
])
def test_arch_zoo_matches_official(variant, arch, dynamic, inhomogeneous):
    """The arch table holds the official configs (test_parity builds them from the official
    kwargs and checks keys, shapes and parameter counts)."""
    cfg = official_kwargs_to_mmevo(VARIANTS[variant]['official'])
    assert cfg['backbone']['dynamic'] == dynamic
    assert cfg['backbone']['inhomogeneous'] == inhomogeneous
    official = DWNet.parse_arch(cfg['backbone']['arch'])
    ours = DWNet.parse_arch(arch)
    if not inhomogeneous:
        ours['inhomo_heads'] = official['inhomo_heads']  # only used by i-dynamic models
    assert ours == official


def test_downstream_backbone_matches_official():
    """The official detection backbone is the same class with its four SyncBN output norms."""
    model = DWNet('tiny', out_indices=(0, 1, 2, 3), pad_to_window=True,
                  out_norm_cfg=dict(type='BN'))
    assert sum(p.numel() for p in model.parameters()) == VARIANTS['DWNet-tiny-det']['params']
    assert model.out_channels == (96, 192, 384, 768)
    assert model.out_strides == (4, 8, 16, 32)


def test_official_head_commit_builds_a_static_model_for_dynamic_kwargs():
    """At the latest official commit ``dynamic=True`` silently builds the static classifier; the
    first commit and the downstream backbone build the dynamic one."""
    kwargs = dict(embed_dim=8, depths=[1, 1, 2, 1], dynamic=True)
    cls = 'models/dwnet.py'
    det = 'downstreams/detection/mmdet/models/backbones/dwnet.py'
    head = official_kwargs_to_mmevo(dict(commit=HEAD, file=cls, kwargs=dict(
        kwargs, num_classes=10, inhomogeneous=False, inhomo_heads=[None] * 4)))
    first = official_kwargs_to_mmevo(dict(commit=FIRST, file=cls, kwargs=kwargs))
    downstream = official_kwargs_to_mmevo(dict(commit=HEAD, file=det, kwargs=dict(
        kwargs, out_indices=[0, 1, 2, 3])))
    assert not head['backbone']['dynamic'] and first['backbone']['dynamic']
    assert downstream['backbone']['dynamic'] and downstream['head'] is None
    assert downstream['backbone']['pad_to_window']
    with pytest.raises(ConversionError, match=r"unsupported official DWNet settings.*'ape'"):
        official_kwargs_to_mmevo(dict(commit=HEAD, file=cls, kwargs=dict(kwargs, ape=True)))


# ------------------------------------------------------------------------------- converter


@pytest.fixture(scope='module')
def static_fixture():
    return load_parity_fixture('dwnet_static_small')


@pytest.fixture(scope='module')
def det_fixture():
    return load_parity_fixture('dwnet_det_dynamic_small')


def test_convert_classification_checkpoint(static_fixture):
    official = static_fixture['state_dict']
    converted = convert_dwnet({'model': official, 'epoch': 300})
    assert converted.keys() == convert_dwnet(official).keys()
    assert {k.split('.')[0] for k in converted} == {'backbone', 'head'}
    # official Linear FFN weights are 1x1 convolution weights here; merging stays Linear
    fc1 = official['layers.1.blocks.0.mlp.fc1.weight']
    torch.testing.assert_close(converted['backbone.stages.1.1.ffn.fc1.weight'],
                               fc1[:, :, None, None])
    torch.testing.assert_close(converted['backbone.stages.1.0.reduction.weight'],
                               official['layers.0.downsample.reduction.weight'])
    torch.testing.assert_close(converted['head.fc.weight'], official['head.weight'])
    torch.testing.assert_close(converted['head.norm.bias'], official['norm.bias'])
    # the converter does not modify its input
    assert official['layers.1.blocks.0.mlp.fc1.weight'].dim() == 2


def test_convert_detector_checkpoint_takes_the_backbone(det_fixture):
    backbone = det_fixture['state_dict']
    detector = {f'backbone.{k}': v for k, v in backbone.items()}
    detector['neck.lateral_convs.0.conv.weight'] = torch.zeros(4, 8, 1, 1)
    detector['roi_head.bbox_head.0.fc_cls.weight'] = torch.zeros(81, 16)
    converted = convert_dwnet({'state_dict': detector, 'meta': {}})
    raw = convert_dwnet(backbone)
    assert converted.keys() == raw.keys()
    assert all(k.startswith('backbone.') for k in converted)
    assert {k for k in converted if 'out_norms' in k} >= {'backbone.out_norms.3.running_var'}
    model = get_converter('dwnet_det').build_official(det_fixture['official'])
    model.load_state_dict(converted, strict=True)
    # --with-heads keeps the detector's other parts under their own names
    whole = convert_dwnet({'state_dict': detector}, with_heads=True)
    assert whole.keys() == converted.keys() | {'neck.lateral_convs.0.conv.weight',
                                               'roi_head.bbox_head.0.fc_cls.weight'}
    detector['ema_backbone.patch_embed.proj.weight'] = torch.zeros(1)
    with pytest.raises(ConversionError, match=r"not keys of an official DWNet detector / "
                                              r"segmentor: \['ema_backbone"):
        convert_dwnet({'state_dict': detector}, with_heads=True)
    with pytest.raises(ConversionError, match='needs a detector / segmentor checkpoint'):
        convert_dwnet(backbone, with_heads=True)


def test_convert_unknown_keys_are_named(static_fixture):
    state = dict(static_fixture['state_dict'])
    state['absolute_pos_embed'] = torch.zeros(1, 768, 8)
    state['layers.0.blocks.0.attn.qkv.weight'] = torch.zeros(24, 8)
    with pytest.raises(ConversionError, match=r"2 keys are not keys of an official DWNet "
                                              r"checkpoint: \['absolute_pos_embed', "
                                              r"'layers.0.blocks.0.attn.qkv.weight'\]"):
        convert_dwnet(state)
    with pytest.raises(ConversionError, match=r'no key starts with patch_embed. or layers.'):
        convert_dwnet({'model': {'stage0.0.norm.weight': torch.zeros(3)}})


def test_converter_cli(tmp_path, static_fixture):
    src, dst = str(tmp_path / 'dwnet_small.pth'), str(tmp_path / 'out' / 'dwnet.pth')
    torch.save({'model': static_fixture['state_dict']}, src)
    assert cli.main('dwnet', [src, dst]) == 0
    ckpt = torch.load(dst, weights_only=True)
    model = get_converter('dwnet').build_official(static_fixture['official']).eval()
    model.load_state_dict(ckpt['state_dict'], strict=True)
    with torch.no_grad():
        torch.testing.assert_close(model(static_fixture['inputs'][0]),
                                   static_fixture['outputs'][0],
                                   atol=static_fixture['atol'], rtol=static_fixture['rtol'])
    assert cli.main('dwnet', [src, src]) == 2  # never overwrites the official checkpoint
    script = osp.join(REPO, 'tools', 'model_converters', 'dwnet_to_mmevo.py')
    assert "run('dwnet')" in open(script).read()


def test_classification_checkpoint_initialises_the_dense_backbone(tmp_path, static_fixture):
    """Output norms are not in a classification checkpoint: they keep their initialisation (as
    in the official downstream code); everything else loads strictly."""
    path = str(tmp_path / 'cls.pth')
    converted = convert_dwnet(static_fixture['state_dict'])
    torch.save(dict(state_dict=converted), path)
    model = DWNet(SMALL, out_indices=(0, 1, 2, 3), pad_to_window=True,
                  out_norm_cfg=dict(type='BN'),
                  init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    model.init_weights()
    own = model.state_dict()
    for key, value in converted.items():
        if key.startswith('backbone.'):
            torch.testing.assert_close(own[key[len('backbone.'):]], value)
    assert all(torch.equal(n.weight, torch.ones_like(n.weight)) for n in model.out_norms)
    # a checkpoint with only some of the output norms is refused
    partial = {k[len('backbone.'):]: v for k, v in converted.items() if k.startswith('backbone.')}
    partial['out_norms.0.weight'] = torch.ones(8)
    with pytest.raises(StateDictMismatchError, match=r'missing'):
        load_weights(model, dict(state_dict=partial))


# ------------------------------------------------------------------------ the downstream option


def _random_block(pad_to_window: bool, mode: str = 'static') -> DWNetBlock:
    torch.manual_seed(0)
    block = DWNetBlock(16, 7, mode, pad_to_window=pad_to_window).eval()
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 1.5)
                m.bias.normal_()
    return block


@pytest.mark.parametrize('mode', ['static', 'dynamic'])
def test_pad_to_window_changes_only_the_right_and_bottom_border(mode):
    plain, padded = _random_block(False, mode), _random_block(True, mode)
    x = torch.randn(2, 16, 16, 19)  # padded to 21 x 21
    with torch.no_grad():
        a, b = plain(x), padded(x)
        # multiples of 7 are not padded
        y = torch.randn(2, 16, 14, 21)
        torch.testing.assert_close(plain(y), padded(y))
    if mode == 'static':
        # the padded zeros pass conv0-BN-ReLU and reach outputs within k // 2 = 3 of the border
        torch.testing.assert_close(a[..., :-3, :-3], b[..., :-3, :-3])
        assert (a[..., -3:, :] - b[..., -3:, :]).abs().amax() > 1e-2
        assert (a[..., :, -3:] - b[..., :, -3:]).abs().amax() > 1e-2
    else:  # dynamic kernels also pool over the padded map: everything changes
        assert (a - b).abs().amax() > 1e-3


@pytest.mark.parametrize('dynamic', [False, True])
def test_any_input_size(dynamic):
    model = DWNet(SMALL, dynamic=dynamic, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, 74, 106))
    assert [tuple(o.shape) for o in outs] == [(2, 8, 19, 27), (2, 16, 10, 14), (2, 32, 5, 7),
                                              (2, 64, 3, 4)]


def test_dynamic_batch_of_one_in_training():
    model = DWNet(SMALL, dynamic=True).train()
    with pytest.raises(ValueError, match=r'DynamicDWConv2d: .*batch of 1'):
        model(torch.randn(1, 3, 64, 64))
    model = DWNet(SMALL, dynamic=True, norm_eval=True).train()
    model(torch.randn(1, 3, 64, 64))[0].sum().backward()


def test_dynamic_outputs_are_per_sample():
    model = DWNet(SMALL, dynamic=True, out_indices=(0, 1, 2, 3)).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        batch, single = model(x), model(x[2:])
    for a, b in zip(batch, single):
        torch.testing.assert_close(a[2:], b, atol=1e-5, rtol=1e-5)


def test_output_norms_freeze_with_their_stage():
    model = DWNet(SMALL, out_indices=(0, 1, 2, 3), out_norm_cfg=dict(type='BN'),
                  frozen_stages=2).train()
    assert [n.weight.requires_grad for n in model.out_norms] == [False, False, True, True]
    assert [n.training for n in model.out_norms] == [False, False, True, True]
    assert not model.stages[1][0].reduction.weight.requires_grad  # merging belongs to stage 1


def test_channels_first_equals_channels_last():
    torch.manual_seed(0)
    a = DWNet(SMALL, dynamic=True, out_indices=(0, 1, 2, 3), channels_last=True).eval()
    b = DWNet(SMALL, dynamic=True, out_indices=(0, 1, 2, 3), channels_last=False).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 70, 90)
    with torch.no_grad():
        for p, q in zip(a(x), b(x)):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('dynamic', [False, True])
def test_fast_training_step_equals_plain_ops(dynamic):
    """The training fast route (depth-wise backward as forward convolutions, lean FFN nodes)
    gives the plain ops' outputs, gradients and BatchNorm statistics."""
    torch.manual_seed(0)
    fast = DWNet(SMALL, dynamic=dynamic, out_indices=(0, 1, 2, 3)).train()
    plain = copy.deepcopy(fast)
    x = torch.randn(2, 3, 64, 96)
    results = []
    for model, switch in ((fast, contextlib.nullcontext()), (plain, plain_ops())):
        torch.manual_seed(1)  # the same stochastic depth masks
        with switch:
            outs = model(x)
            sum(o.square().mean() for o in outs).backward()
        results.append((outs, model))
    (outs_a, a), (outs_b, b) = results
    for o, p in zip(outs_a, outs_b):
        torch.testing.assert_close(o, p, atol=1e-5, rtol=1e-4)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-5, rtol=1e-4, msg=name)
    for m, n in zip(a.modules(), b.modules()):
        if isinstance(m, _BatchNorm):
            torch.testing.assert_close(m.running_var, n.running_var)


def test_official_initialisation():
    torch.manual_seed(0)
    model = DWNet(dict(embed_dims=32, depths=[1, 1, 1, 1]))
    model.init_weights()
    fc1 = model.stages[3][1].ffn.fc1
    assert 0.015 < fc1.weight.std() < 0.025 and not fc1.bias.any()
    assert 0.015 < model.stages[2][0].reduction.weight.std() < 0.025


def test_inhomogeneous_model_trains_on_cpu():
    model = DWNet(dict(SMALL, inhomo_heads=[2, 4, 8, 16]), dynamic=True, inhomogeneous=True,
                  out_indices=(0, 1, 2, 3)).train()
    assert model.stages[0][0].dw.conv.groups == 4
    outs = model(torch.randn(2, 3, 60, 52))
    sum(o.square().mean() for o in outs).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    with pytest.raises(ValueError, match=r"needs arch\['inhomo_heads'\]"):
        DWNet(dict(SMALL), dynamic=True, inhomogeneous=True)


# ------------------------------------------------------------------------------------ head


def test_head_is_layernorm_over_tokens_then_mean():
    torch.manual_seed(0)
    head = DWNetClsHead(num_classes=5, in_channels=16)
    with torch.no_grad():
        head.norm.weight.normal_()
        head.norm.bias.normal_()
    x = torch.randn(2, 16, 3, 4)
    tokens = x.flatten(2).transpose(1, 2)  # the official (B, H*W, C) layout
    ref = F.linear(F.layer_norm(tokens, (16, ), head.norm.weight, head.norm.bias, 1e-5).mean(1),
                   head.fc.weight, head.fc.bias)
    torch.testing.assert_close(head((x, )), ref)
    with pytest.raises(ValueError, match=r'expects \(B, 16, H, W\) maps, got \(2, 8, 3, 4\)'):
        head((torch.randn(2, 8, 3, 4), ))

# Copyright (c) mmevo contributors. All rights reserved.
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm

from mmevo.models import EATFormer, EATFormerClsHead
from mmevo.testing import ClassifierUnderTest, load_parity_fixture, load_parity_manifest
from mmevo.utils.checkpoint import StateDictMismatchError
from mmevo.utils.converters import ConversionError, convert_eatformer, official_kwargs_to_mmevo

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
MANIFEST = load_parity_manifest('eatformer')
VARIANTS = {v['variant']: v for v in MANIFEST}
ARCHS = ['mobile', 'lite', 'tiny', 'mini', 'small', 'medium', 'base']
TINY_ARCH = dict(depths=[1, 1, 2, 1], embed_dims=[16, 16, 24, 32], dim_heads=[8, 8, 4, 8],
                 op_names=[['conv'], ['conv'], ['mdmsa', 'conv'], ['msa', 'conv']],
                 window_sizes=[7, 7, 3, 2])


def build_official(variant: dict) -> ClassifierUnderTest:
    official = variant['official']
    cfg = official_kwargs_to_mmevo(official.get('resolved_kwargs') or official['kwargs'])
    head = EATFormerClsHead(**cfg['head']) if cfg['head'] else None
    return ClassifierUnderTest(EATFormer(**cfg['backbone']), head)


def manifest_state_dict(variant: dict) -> dict:
    keys = variant['keys'] if 'keys' in variant else VARIANTS[variant['keys_same_as']]['keys']
    return {k: torch.zeros(shape, dtype=torch.int64 if k.endswith('num_batches_tracked')
                           else torch.float32) for k, shape in keys}


@pytest.mark.parametrize('arch', ARCHS)
def test_arch_zoo_matches_official(arch):
    variant = VARIANTS[f'EATFormer-{arch}']
    model = ClassifierUnderTest(
        EATFormer(arch), EATFormerClsHead(1000, EATFormer.arch_zoo[arch]['embed_dims'][-1]))
    assert sum(p.numel() for p in model.parameters()) == variant['params']
    alias = {'mobile': 'm', 'lite': 'l', 'tiny': 't', 'mini': 'mi', 'small': 's',
             'medium': 'me', 'base': 'b'}[arch]
    assert EATFormer.parse_arch(alias.upper()) == EATFormer.parse_arch(arch)


@pytest.mark.parametrize('size', [('s', 'det'), ('t', 'det'), ('b', 'det')])
def test_downstream_settings_match_official(size):
    """The downstream backbone is configuration of the same class."""
    arch = {'t': 'tiny', 's': 'small', 'b': 'base'}[size[0]]
    variant = VARIANTS[f'EATFormer-{arch}-downstream']
    model = EATFormer(arch, window_size=14, out_indices=(0, 1, 2, 3),
                      global_window_periods=[-1, -1, 3, 2] if arch == 'tiny' else None)
    assert sum(p.numel() for p in model.parameters()) == variant['params']
    windows = [blk.gli.ops[0].window_size for blk in model.stages[2]]
    assert windows == ([-1, 14, 14, -1, 14, 14] if arch == 'tiny' else [14] * len(windows))


@pytest.mark.parametrize('arch', ARCHS)
def test_forward_shapes(arch):
    model = EATFormer(arch, out_indices=(0, 1, 2, 3)).eval()
    dims = EATFormer.arch_zoo[arch]['embed_dims']
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 224, 224))
        assert [tuple(o.shape) for o in outs] == [(1, d, 56 // 2**i, 56 // 2**i)
                                                  for i, d in enumerate(dims)]
        if EATFormer.parse_arch(arch)['down_mode'] == 'patch':
            with pytest.raises(ValueError, match='multiples of 32'):
                model(torch.randn(1, 3, 193, 257))
            outs = model(torch.randn(1, 3, 160, 288))
            assert [tuple(o.shape[-2:]) for o in outs] == [(40, 72), (20, 36), (10, 18), (5, 9)]
        else:
            outs = model(torch.randn(1, 3, 193, 257))
            assert [tuple(o.shape) for o in outs] == [(1, dims[0], 49, 65), (1, dims[1], 25, 33),
                                                      (1, dims[2], 13, 17), (1, dims[3], 7, 9)]
    assert all(torch.isfinite(o).all() for o in outs)


def test_out_indices():
    model = EATFormer(TINY_ARCH, out_indices=(1, -1)).eval()
    outs = model(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 16, 8, 8), (2, 32, 2, 2)]
    assert isinstance(outs, tuple)
    assert len(EATFormer(TINY_ARCH)(torch.randn(1, 3, 64, 64))) == 1
    with pytest.raises(ValueError, match=r'out_indices=\(4,\) is out of its domain'):
        EATFormer(TINY_ARCH, out_indices=(4, ))


def test_frozen_stages():
    model = EATFormer(TINY_ARCH, frozen_stages=2)
    model.train()
    for module in (model.stem, model.stages[0], model.stages[1]):
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
    for module in (model.stages[2], model.stages[3]):
        assert module.training
        assert all(p.requires_grad for p in module.parameters())
    stem_only = EATFormer(TINY_ARCH, frozen_stages=0).train()
    assert all(not p.requires_grad for p in stem_only.stem.parameters())
    assert all(p.requires_grad for p in stem_only.stages.parameters())
    assert all(p.requires_grad for p in EATFormer(TINY_ARCH).parameters())


def test_norm_eval():
    model = EATFormer(TINY_ARCH, norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    before = bns[0].running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(before, bns[0].running_mean)
    assert all(m.training for m in EATFormer(TINY_ARCH).train().modules()
               if isinstance(m, _BatchNorm))


def test_with_cp_matches_plain():
    torch.manual_seed(0)
    plain = EATFormer(TINY_ARCH, out_indices=(0, 1, 2, 3))
    ckpt = EATFormer(TINY_ARCH, out_indices=(0, 1, 2, 3), with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    assert ckpt.with_cp
    x = torch.randn(2, 3, 64, 64)
    grads = []
    for model in (plain, ckpt):
        model.eval()  # deterministic (no drop path / batch statistics)
        inp = x.clone().requires_grad_()
        sum(o.sum() for o in model(inp)).backward()
        grads.append((inp.grad, [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b)


def test_drop_path_schedule():
    model = EATFormer('tiny', drop_path_rate=0.2)
    rates = [blk.ffn.drop_path.drop_prob if hasattr(blk.ffn.drop_path, 'drop_prob') else 0.
             for stage in model.stages for blk in stage]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.2)
    assert rates == sorted(rates)
    default = EATFormer('small')
    assert default.stages[-1][-1].ffn.drop_path.drop_prob == pytest.approx(0.1)


def test_get_layer_depth():
    model = EATFormer(TINY_ARCH)
    num = sum(TINY_ARCH['depths']) + 2
    assert model.get_layer_depth('backbone.stem.0.proj.weight', 'backbone.') == (0, num)
    assert model.get_layer_depth('backbone.stages.0.0.ffn.gamma', 'backbone.') == (1, num)
    assert model.get_layer_depth('backbone.stages.2.1.gli.alphas', 'backbone.') == (4, num)
    assert model.get_layer_depth('head.fc.weight', 'backbone.') == (num - 1, num)
    depths = [model.get_layer_depth(n)[0] for n, _ in model.named_parameters()]
    assert depths == sorted(depths) and max(depths) == num - 2


def test_custom_arch_and_errors():
    model = EATFormer(dict(TINY_ARCH, window_sizes=[7, 7, [2, 3], -1], down_mode='patch',
                           msra_mode='cat', gli_split=False), out_indices=(0, 1, 2, 3))
    assert model.stages[2][0].gli.ops[0].window_size == [2, 3]
    assert len(model.stages[2][0].msra.convs) == 3
    outs = model.eval()(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    # the generic argument checks are in tests/test_zoo.py; these are EATFormer's own domains
    with pytest.raises(ValueError, match=r"arch\['depths'\]=\[1, 1, 1\].*list of 4 items"):
        EATFormer(dict(TINY_ARCH, depths=[1, 1, 1]))
    with pytest.raises(ValueError, match=r"arch\['op_names'\].*'attention'"):
        EATFormer(dict(TINY_ARCH, op_names=[['conv'], ['conv'], ['attention', 'conv'],
                                            ['msa', 'conv']]))
    with pytest.raises(ValueError, match=r"attention channels 12 .* arch\['dim_heads'\]\[2\]=5"):
        EATFormer(dict(TINY_ARCH, dim_heads=[8, 8, 5, 8]))
    with pytest.raises(ValueError, match=r"embed_dims'\]\[0\] must be even"):
        EATFormer(dict(TINY_ARCH, embed_dims=[15, 16, 24, 32]))
    with pytest.raises(ValueError, match=r"arch\['down_mode'\]='conv'"):
        EATFormer(dict(TINY_ARCH, down_mode='conv'))


def test_bf16_autocast_finite():
    model = EATFormer(TINY_ARCH, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(2, 3, 64, 64))
    assert all(torch.isfinite(o.float()).all() for o in outs)
    model.train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = sum(o.float().mean() for o in model(torch.randn(2, 3, 64, 64)))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_pretrained_init_cfg_strict(tmp_path):
    fx = load_parity_fixture('eatformer_mdmsa_small')
    converted = convert_eatformer(fx['state_dict'])
    path = str(tmp_path / 'converted.pth')
    torch.save(dict(state_dict=converted), path)
    cfg = official_kwargs_to_mmevo(fx['official']['kwargs'])['backbone']
    model = EATFormer(**cfg, init_cfg=dict(type='Pretrained', checkpoint=path,
                                           prefix='backbone.'))
    model.init_weights()
    expected = {k[len('backbone.'):]: v for k, v in converted.items() if k.startswith('backbone.')}
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0)
    # a checkpoint of another arch: clear errors naming the problem
    wrong = EATFormer(TINY_ARCH, init_cfg=dict(type='Pretrained', checkpoint=path,
                                               prefix='backbone.'))
    with pytest.raises(StateDictMismatchError, match='missing and .* unexpected keys'):
        wrong.init_weights()
    official = str(tmp_path / 'official.pth')
    torch.save(fx['state_dict'], official)
    raw = EATFormer(**cfg, init_cfg=dict(type='Pretrained', checkpoint=official,
                                         prefix='backbone.'))
    with pytest.raises(StateDictMismatchError, match='eatformer_to_mmevo|model_converters'):
        raw.init_weights()


def test_converter_rejects_other_models():
    with pytest.raises(ConversionError, match='not an official EATFormer'):
        convert_eatformer({'patch_embed.proj.weight': torch.zeros(1)})
    fx = load_parity_fixture('eatformer_msa_small')
    sd = dict(fx['state_dict'], **{'stage2.0.layer2.extra.weight': torch.zeros(1)})
    with pytest.raises(ConversionError, match='stage2.0.layer2.extra.weight'):
        convert_eatformer(sd)


def test_converter_tool_round_trip(tmp_path):
    """The CLI reads a training checkpoint ('net'), writes backbone./head. keys that an
    mmpretrain ImageClassifier built from our config loads strictly, with identical logits."""
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS as ROOT_MODELS
    from mmengine.registry import init_default_scope
    fx = load_parity_fixture('eatformer_mobile')
    src, dst = tmp_path / 'official.pth', tmp_path / 'mmevo.pth'
    torch.save({'net': fx['state_dict'], 'epoch': 300}, src)
    run = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/model_converters/eatformer_to_mmevo.py'),
         str(src), str(dst)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert '1,893,474 parameters' in run.stdout
    ckpt = torch.load(dst, weights_only=True)
    assert set(ckpt) == {'state_dict', 'meta'}
    cfg = Config.fromfile(osp.join(REPO, 'configs/eatformer/eatformer-mobile_8xb128_in1k.py'))
    init_default_scope(cfg.default_scope)
    classifier = revert_sync_batchnorm(ROOT_MODELS.build(cfg.model))
    classifier.load_state_dict(ckpt['state_dict'], strict=True)
    classifier.eval()
    with torch.no_grad():
        logits = classifier(fx['inputs'][0], mode='tensor')
    torch.testing.assert_close(logits, fx['outputs'][0], atol=fx['atol'], rtol=fx['rtol'])
    bad = tmp_path / 'other.pth'
    torch.save({'model': {'blocks.0.attn.qkv.weight': torch.zeros(3, 3)}}, bad)
    run = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/model_converters/eatformer_to_mmevo.py'),
         str(bad), str(tmp_path / 'x.pth')], capture_output=True, text=True)
    assert run.returncode == 1 and 'not an official EATFormer' in run.stderr


def test_torch_compile_fullgraph_equals_eager():
    """The backbone traces as one graph (fullgraph=True fails on any graph break) and the
    compiled forward and backward equal eager. aot_eager keeps this test fast; inductor is
    exercised by tools/analysis_tools/benchmark.py --compile."""
    torch._dynamo.reset()
    model = EATFormer(TINY_ARCH, out_indices=(0, 1, 2, 3)).eval()
    compiled = torch.compile(model, backend='aot_eager', fullgraph=True)
    x = torch.randn(2, 3, 64, 96, requires_grad=True)
    eager = model(x)
    for got, exp in zip(compiled(x), eager):
        torch.testing.assert_close(got, exp)
    grad_eager = torch.autograd.grad(sum(o.sum() for o in eager), x)[0]
    grad_compiled = torch.autograd.grad(sum(o.sum() for o in compiled(x)), x)[0]
    torch.testing.assert_close(grad_compiled, grad_eager)


def test_channels_last_equals_contiguous():
    model = EATFormer(TINY_ARCH, out_indices=(0, 1, 2, 3)).eval()
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        ref = model(x)
        model_cl = model.to(memory_format=torch.channels_last)
        got = model_cl(x.contiguous(memory_format=torch.channels_last))
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('wrapper', ['raw', 'state_dict', 'model', 'net', 'net_E'])
def test_converter_checkpoint_wrappers(wrapper):
    fx = load_parity_fixture('eatformer_msa_small')
    raw = fx['state_dict']
    decoy = {k: torch.zeros_like(v) for k, v in raw.items()}
    if wrapper == 'raw':
        ckpt, kwargs = raw, {}
    elif wrapper == 'net_E':  # EMA weights beside the plain ones
        ckpt, kwargs = {'net': decoy, 'net_E': raw, 'optimizer': {}}, {'use_ema': True}
    else:
        ckpt, kwargs = {wrapper: {f'module.{k}': v for k, v in raw.items()}, 'epoch': 3}, {}
    converted = convert_eatformer(ckpt, **kwargs)
    expected = convert_eatformer(raw)
    assert list(converted) == list(expected)
    assert all(torch.equal(converted[k], expected[k]) for k in expected)
    with pytest.raises(ConversionError, match='net_E'):
        convert_eatformer({'net': raw}, use_ema=True)


def test_mdmsa_offsets_stay_float32_under_autocast():
    from mmevo.models.backbones.eatformer import MDMSA
    layer = MDMSA(16, 4, window_size=4)
    x = torch.randn(2, 16, 8, 8)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        om = layer.offset(layer.q(x).reshape(4, 8, 8, 8))
        assert om.dtype == torch.bfloat16
        grid, modulation = layer.sampling_grid(om)
        out = layer(x)
    assert grid.dtype == torch.float32 and modulation.dtype == torch.float32
    assert torch.isfinite(out.float()).all()

# Copyright (c) mmevo contributors. All rights reserved.
"""EAT: what the generic matrix (tests/test_zoo.py) and the parity tests (test_parity.py) cannot
know: the tokenizer equality, the zoo against the official factories, input sizes (position
embedding resizing, dense padding, the pyramid), dense loading of classification weights, the
class-attention head in mmpretrain and the converter CLI."""
import contextlib
import logging
import math
import os.path as osp
import runpy
import sys

import pytest
import torch
import torch.nn.functional as F
from mmengine.logging import MMLogger

import mmevo
from mmevo.models import EAT
from mmevo.models.heads import ClassAttentionHead
from mmevo.models.layers import plain_ops
from mmevo.testing import load_parity_fixture, load_parity_manifest, saved_tensor_bytes
from mmevo.utils.checkpoint import StateDictMismatchError
from mmevo.utils.converters import ConversionError, get_converter
from mmevo.utils.converters.eat import convert_eat, official_kwargs_to_mmevo

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
VARIANTS = {v['variant']: v for v in load_parity_manifest('eat')}
TINY = dict(embed_dims=32, depth=4, num_heads=4, mlp_ratio=2.)


@pytest.fixture(scope='module')
def small():
    """The official small EAT fixture and its port with converted weights."""
    fixture = load_parity_fixture('eat_small')
    model = get_converter('eat').build_official(fixture['official'])
    model.load_state_dict(convert_eat(fixture['state_dict']), strict=True)
    return fixture, model.eval()


# ------------------------------------------------------------------------- the model


@pytest.mark.parametrize('name,arch,img_size', [
    ('EAT-Ti', 'ti', 224), ('EAT-S', 's', 224), ('EAT-M', 'm', 224), ('EAT-B', 'b', 224),
    ('EAT-Ti-384', 'tiny', 384), ('EAT-S-384', 'small', 384), ('EAT-B-384', 'base', 384)])
def test_arch_zoo_matches_official_factories(name, arch, img_size):
    """Every arch (and alias) is the official eat_progress{3,6,9,12}_patch16_{224,384} with the
    main.py settings (test_parity.py checks that model's keys, shapes and parameter count)."""
    cfg = official_kwargs_to_mmevo(VARIANTS[name]['official']['resolved_kwargs'])
    assert EAT.parse_arch(arch) == EAT.parse_arch(cfg['backbone']['arch'])
    assert cfg['backbone']['img_size'] == img_size
    assert cfg['head']['num_heads'] == EAT.parse_arch(arch)['num_heads']
    long_name = {'ti': 'tiny', 's': 'small', 'm': 'medium', 'b': 'base'}.get(arch, arch)
    assert EAT.parse_arch(long_name.upper()) == EAT.parse_arch(arch)


def test_tokenizer_equals_patch_convolution(small):
    """The official space-filling-curve tokenizer (pixels permuted by the fixture's own
    ``loc_encoder.index_flat_inv``, then Conv1d with kernel = stride = 256) equals the port's
    16x16 stride-16 convolution with the reshaped weight; raster order would not."""
    fixture, model = small
    official = fixture['state_dict']
    x = fixture['inputs'][0]
    seq = x.flatten(2).transpose(1, 2)  # (B, H*W, 3), pixels in raster order
    index = official['loc_encoder.index_flat_inv'].expand(seq.shape)
    encoded = torch.zeros_like(seq).scatter_(1, index, seq)  # LocED.encode
    tokens = F.conv1d(encoded.transpose(1, 2), official['patch_embed.weight'],
                      official['patch_embed.bias'], stride=256).transpose(1, 2)
    ours = model.backbone.stem(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(ours, tokens, atol=1e-5, rtol=1e-5)
    raster = F.conv1d(x.flatten(2), official['patch_embed.weight'],
                      official['patch_embed.bias'], stride=256).transpose(1, 2)
    assert (raster - tokens).abs().max() > 0.1
    # the permutation is the 16x16 patch order of its definition: patch by patch, row-major
    h, w = x.shape[-2:]
    order = torch.arange(h * w).reshape(h // 16, 16, w // 16, 16).permute(0, 2, 1, 3).flatten()
    assert torch.equal(official['loc_encoder.index_flat'].flatten(), order)


def test_block_matches_the_official_formula():
    """One block is x + [attn(LN(x_g)), conv1d(linear(LN(x_l)))], then x + mlp(LN(x)), written
    out here with plain ops (the 1-D convolution over raster order wraps across rows)."""
    torch.manual_seed(0)
    model = EAT(TINY, img_size=64).eval()
    block = model.stages[1][0]
    x = torch.randn(2, 16, 32)
    g, loc = x[..., :16], x[..., 16:]
    h = F.layer_norm(g, (16, ), block.norm_global.weight, block.norm_global.bias, 1e-6)
    q, k, v = F.linear(h, block.attn.qkv.weight, block.attn.qkv.bias).reshape(
        2, 16, 3, 2, 8).permute(2, 0, 3, 1, 4)
    a = ((q @ k.transpose(-1, -2)) * 8**-0.5).softmax(-1) @ v
    a = F.linear(a.transpose(1, 2).reshape(2, 16, 16), block.attn.proj.weight,
                 block.attn.proj.bias)
    lin = F.linear(F.layer_norm(loc, (16, ), block.norm_local.weight, block.norm_local.bias,
                                1e-6), block.local.linear.weight, block.local.linear.bias)
    padded = F.pad(lin, (0, 0, 1, 1))  # zeros before the first and after the last token only
    conv = sum(padded[:, j:j + 16] @ block.local.conv.weight[:, :, j].T for j in range(3))
    y = x + torch.cat([a, conv + block.local.conv.bias], -1)
    mlp = block.mlp
    y = y + mlp.fc2(F.gelu(mlp.fc1(F.layer_norm(y, (32, ), block.norm_mlp.weight,
                                                 block.norm_mlp.bias, 1e-6))))
    with torch.no_grad():
        torch.testing.assert_close(block(x), y, atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------- inputs


@pytest.mark.parametrize('size', [(224, 224), (160, 256)])
def test_shapes_for_every_out_indices(size):
    model = EAT(TINY).eval()
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        for indices in [-1, 0, (0, 2), (1, 2, 3), (-4, -1)]:
            model.out_indices = tuple(sorted(i % 4 for i in ([indices] if isinstance(
                indices, int) else indices)))
            outs = model(x)
            assert [tuple(o.shape) for o in outs] == [(1, 32, size[0] // 16, size[1] // 16)
                                                      ] * len(model.out_indices)
    assert EAT(TINY, out_indices=(0, 3)).out_channels == (32, 32)
    assert EAT(TINY, out_indices=(0, 3)).out_strides == (16, 16)


def test_input_not_a_multiple_of_16_classification_error_dense_padding():
    torch.manual_seed(0)
    cls = EAT(TINY, out_indices=(1, 3)).eval()
    x = torch.randn(2, 3, 100, 120)
    with pytest.raises(ValueError, match=r'dense=True pads.*multiples of 16, got 100x120'):
        cls(x)
    dense = EAT(TINY, out_indices=(1, 3), dense=True).eval()
    dense.load_state_dict(cls.state_dict(), strict=False)
    with torch.no_grad():
        outs = dense(x)
        # exactly the classification model on the zero-padded input, then the output norms
        ref = cls(F.pad(x, (0, 8, 0, 12)))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 7, 8)] * 2
    for o, r, norm in zip(outs, ref, dense.out_norms):
        torch.testing.assert_close(o, norm(r))


@pytest.mark.parametrize('out_indices', [-1, (0, 1, 2, 3)])
def test_pyramid_shapes_strides_and_crops(out_indices):
    model = EAT(TINY, out_indices=out_indices, pyramid=True).eval()
    assert model.dense and model.out_channels == (8, 16, 32, 32)
    assert model.out_strides == (4, 8, 16, 32)
    with torch.no_grad():
        for h, w in [(64, 96), (100, 131), (17, 16)]:
            outs = model(torch.randn(1, 3, h, w))
            assert [tuple(o.shape) for o in outs] == [
                (1, c, math.ceil(h / s), math.ceil(w / s))
                for c, s in zip(model.out_channels, model.out_strides)]
            assert all(o.is_contiguous() for o in outs)


def test_pyramid_levels_rescale_their_taps():
    """Level k of the block-tap pyramid is the k-th tap (normed) rescaled x4, x2, x1, x0.5."""
    torch.manual_seed(0)
    model = EAT(TINY, out_indices=(0, 1, 2, 3), pyramid=True).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        outs = model(x)
        model.pyramid, pyramid = None, model.pyramid
        taps = model(x)
    levels = pyramid.levels
    with torch.no_grad():
        torch.testing.assert_close(outs[0], levels[0](taps[0]))
        torch.testing.assert_close(outs[1], levels[1](taps[1]))
        torch.testing.assert_close(outs[2], taps[2])
        torch.testing.assert_close(outs[3], F.max_pool2d(taps[3], 2, ceil_mode=True))


def test_position_embeddings_resized_bicubically_in_raster_layout():
    """Another input size resizes the stored grid bicubically per axis (rows stay rows); the
    stored size uses it unchanged; a checkpoint of another img_size is resized once on load."""
    model = EAT(TINY, img_size=96)
    rows = torch.arange(6.).repeat_interleave(6)
    cols = torch.arange(6.).repeat(6)
    with torch.no_grad():
        model.pos_embed.zero_()
        model.pos_embed[0, :, 0] = rows
        model.pos_embed[0, :, 1] = cols
    assert model.pos_embed_for((6, 6)) is model.pos_embed
    resized = model.pos_embed_for((6, 9)).reshape(6, 9, 32)
    expected = F.interpolate(model.pos_embed.reshape(1, 6, 6, 32).permute(0, 3, 1, 2),
                             size=(6, 9), mode='bicubic', align_corners=False)
    torch.testing.assert_close(resized, expected[0].permute(1, 2, 0))
    torch.testing.assert_close(resized[..., 0], rows.reshape(6, 6)[:, :1].expand(6, 9))
    assert torch.allclose(resized[..., 1], resized[:1, :, 1].expand(6, 9))

    big = EAT(TINY, img_size=128)
    state = model.state_dict()
    big.load_state_dict(state)
    torch.testing.assert_close(big.pos_embed, model.pos_embed_for((8, 8)))
    again = big.state_dict()
    big.adapt_state_dict(again, '')  # idempotent
    torch.testing.assert_close(again['pos_embed'], big.pos_embed)
    with pytest.raises(ValueError, match='not a square grid'):
        big.adapt_state_dict({'pos_embed': torch.zeros(1, 12, 32)}, '')


def test_other_input_size_equals_the_model_built_for_it(small):
    """A 224-trained model at 384 (resized at forward) equals the model built for 384 with the
    same weights (resized on load): both are main.py's fine-tuning start point."""
    fixture, model = small
    big = get_converter('eat').build_official(fixture['official'], img_size=128).eval()
    big.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(model(x), big(x))


# ------------------------------------------------------------------ freezing and modes


def test_frozen_stages_freeze_pos_embed_norms_and_pyramid_levels():
    model = EAT(TINY, out_indices=(0, 1, 2, 3), pyramid=True, frozen_stages=2).train()
    assert not model.pos_embed.requires_grad and not model.stem.weight.requires_grad
    assert [all(not p.requires_grad for p in s.parameters()) for s in model.stages] == [
        True, True, False, False]
    assert [all(not p.requires_grad for p in n.parameters()) for n in model.out_norms] == [
        True, True, False, False]
    frozen_levels = [all(not p.requires_grad for p in lv.parameters())
                     for lv in model.pyramid.levels[:2]]
    assert frozen_levels == [True, True] and not model.pyramid.levels[0].training
    one_tap = EAT(TINY, out_indices=3, pyramid=True, frozen_stages=3)
    assert all(p.requires_grad for p in one_tap.pyramid.parameters())
    one_tap = EAT(TINY, out_indices=2, pyramid=True, frozen_stages=3)
    assert not any(p.requires_grad for p in one_tap.pyramid.parameters())
    assert EAT(TINY).get_layer_depth('backbone.pos_embed', 'backbone.') == (0, 6)


def test_norm_eval_keeps_a_batchnorm_pyramid_in_eval():
    model = EAT(TINY, pyramid=True, pyramid_norm_cfg=dict(type='BN'), norm_eval=True).train()
    bn = model.pyramid.levels[0].norm
    before = bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert not bn.training and torch.equal(bn.running_mean, before)
    model = EAT(TINY, pyramid=True, pyramid_norm_cfg=dict(type='BN')).train()
    model(torch.randn(2, 3, 64, 64))
    assert model.pyramid.levels[0].norm.training


def test_with_cp_recomputes_every_block_in_backward():
    calls = []
    for with_cp in (False, True):
        model = EAT(TINY, with_cp=with_cp).train()
        counter = [0]
        model.stages[2][0].register_forward_pre_hook(
            lambda *_: counter.__setitem__(0, counter[0] + 1))
        model(torch.randn(1, 3, 32, 32))[0].sum().backward()
        calls.append(counter[0])
    assert calls == [1, 2]


def test_lean_training_equals_plain_ops_and_keeps_less():
    """The fast route of a training step (lean MLP nodes, one-pass residuals) gives the plain
    ops' outputs and gradients, and a block keeps a third less for backward (the normalised
    tokens and GELU's 4x wider output are recomputed)."""
    torch.manual_seed(0)
    model = EAT(dict(embed_dims=32, depth=4, num_heads=4), out_indices=(1, 3)).train()
    results = []
    for plain in (False, True):
        model.zero_grad()
        inp = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
        inp.requires_grad_()
        tokens = torch.randn(4, 256, 32, generator=torch.Generator().manual_seed(2),
                             requires_grad=True)
        with plain_ops() if plain else contextlib.nullcontext():
            outs = model(inp)
            sum(o.square().sum() for o in outs).backward()
            _, saved = saved_tensor_bytes(lambda: model.stages[0][0](tokens))
        results.append((outs, [inp.grad] + [p.grad.clone() for p in model.parameters()], saved))
    (fast, fast_grads, fast_saved), (plain, plain_grads, plain_saved) = results
    for a, b in zip(fast + tuple(fast_grads), plain + tuple(plain_grads)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    # measured: 10.1 vs 15.1 token maps of 4 x 256 x 32 floats
    assert fast_saved < 0.7 * plain_saved, (fast_saved, plain_saved)


def test_bf16_autocast_dense_pyramid_is_finite():
    model = EAT(TINY, out_indices=(0, 1, 2, 3), pyramid=True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(2, 3, 50, 70))
        sum(o.float().mean() for o in outs).backward()
    assert all(torch.isfinite(o.float()).all() for o in outs)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


# --------------------------------------------------------------------------- loading


def _save_converted(fixture, path):
    torch.save(dict(state_dict=convert_eat(fixture['state_dict'])), path)


def test_classification_checkpoint_loads_into_the_dense_backbone(small, tmp_path):
    """init_cfg loads a converted classification checkpoint into a pyramid EAT: every backbone
    weight is loaded, the dense-only layers (named in a warning) keep their initialisation."""
    fixture, model = small
    path = str(tmp_path / 'eat_small_in1k.pth')
    _save_converted(fixture, path)
    dense = EAT(**official_kwargs_to_mmevo(fixture['official']['kwargs'])['backbone'],
                out_indices=-1, pyramid=True,
                init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    fresh = {k: v.clone() for k, v in dense.state_dict().items()
             if k.startswith(('pyramid.', 'out_norms.'))}
    logger = MMLogger.get_current_instance()
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        dense.init_weights()
    finally:
        logger.removeHandler(handler)
    assert set(dense.initialised_fresh) == set(fresh) and fresh
    assert any(all(k in r.getMessage() for k in fresh) for r in records)
    for key, value in dense.state_dict().items():
        expected = fresh[key] if key in fresh else model.backbone.state_dict()[key]
        torch.testing.assert_close(value, expected, msg=key)

    # anything else missing is still an error
    state = convert_eat(fixture['state_dict'])
    del state['backbone.stages.1.0.mlp.fc1.bias']
    torch.save(dict(state_dict=state), path)
    broken = EAT(**official_kwargs_to_mmevo(fixture['official']['kwargs'])['backbone'],
                 pyramid=True)
    with pytest.raises(StateDictMismatchError,
                       match=r'1 missing.*\n  missing: stages\.1\.0\.mlp\.fc1\.bias\n'):
        broken.load_pretrained(path, prefix='backbone.')
    # a classification model stays strict about dense keys it does not have
    with pytest.raises(RuntimeError, match='pyramid'):
        model.backbone.load_state_dict(dense.state_dict())


def test_create_backbone_converts_an_official_checkpoint(small, tmp_path):
    """mmevo.create_backbone: the official checkpoint converted on the fly gives the official
    per-block maps; the dense pyramid backbone takes it too (its new layers named)."""
    fixture, _ = small
    path = str(tmp_path / 'EAT-small.pth')
    torch.save(dict(model=fixture['state_dict']), path)
    kwargs = official_kwargs_to_mmevo(fixture['official']['kwargs'])['backbone']
    assert {'eat_tiny', 'eat_small', 'eat_medium', 'eat_base'} <= set(mmevo.list_models('eat_*'))
    backbone = mmevo.create_backbone('EAT', checkpoint=path, out_indices=(0, 1, 2), **kwargs)
    with torch.no_grad():
        outs = backbone.eval()(fixture['inputs'][0])
    for got, expected in zip(outs, fixture['stage_outputs'][0]):
        torch.testing.assert_close(got, expected, atol=fixture['atol'], rtol=fixture['rtol'])
    dense = mmevo.create_backbone('EAT', checkpoint=path, out_indices=-1, pyramid=True, **kwargs)
    assert dense.initialised_fresh and all(k.startswith(('pyramid.', 'out_norms.'))
                                           for k in dense.initialised_fresh)


# ------------------------------------------------------------------------------ head


def test_image_classifier_gives_the_official_logits(small):
    """mmpretrain's ImageClassifier(EAT + ClassAttentionHead) with converted weights."""
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    fixture, _ = small
    cfg = official_kwargs_to_mmevo(fixture['official']['kwargs'])
    with DefaultScope.overwrite_default_scope('mmpretrain'):  # whatever scope ran before
        classifier = MODELS.build(dict(
            type='ImageClassifier', backbone=dict(type='mmevo.EAT', **cfg['backbone']),
            head=dict(type='mmevo.ClassAttentionHead', **cfg['head'])))
    classifier.load_state_dict(convert_eat(fixture['state_dict']), strict=True)
    classifier.eval()
    with torch.no_grad():
        logits = classifier(fixture['inputs'][0], mode='tensor')
    torch.testing.assert_close(logits, fixture['outputs'][0], atol=fixture['atol'],
                               rtol=fixture['rtol'])


def test_class_attention_head_options_and_errors():
    head = ClassAttentionHead(10, 32, 4, num_blocks=1, norm_tokens=False, kv_norm=True)
    assert isinstance(head.norm, torch.nn.Identity)
    assert isinstance(head.blocks[0].norm_kv, torch.nn.LayerNorm)
    maps = torch.randn(2, 32, 3, 5)
    tokens = maps.flatten(2).transpose(1, 2)
    torch.testing.assert_close(head((maps, )), head((tokens, )))
    # cross-attention is order-free: shuffled tokens give the same logits
    torch.testing.assert_close(head((tokens[:, torch.randperm(15)], )), head((tokens, )))
    with pytest.raises(ValueError, match=r'expects \(B, 32, H, W\) maps'):
        head((torch.randn(2, 16, 3, 3), ))
    with pytest.raises(ValueError, match='in_channels=30 must be a multiple of num_heads=4'):
        ClassAttentionHead(10, 30, 4)
    with pytest.raises(ValueError, match='num_classes=0'):
        ClassAttentionHead(0, 32, 4)


# ------------------------------------------------------------------------- converter


def _run_script(script, *args, capsys):
    """Run a tools/ script in this process (as ``python script args``): exit status, out, err."""
    argv = sys.argv
    sys.argv = [script, *args]
    try:
        runpy.run_path(script, run_name='__main__')
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv = argv
    out = capsys.readouterr()
    return code, out.out, out.err


def test_converter_cli(small, tmp_path, capsys):
    """Official checkpoint ({'model': ...}, or raw) -> mmevo file that loads strictly; index
    tensors dropped and never required; unknown keys named."""
    fixture, model = small
    src, dst = str(tmp_path / 'EAT-small.pth'), str(tmp_path / 'eat-small_mmevo.pth')
    torch.save(dict(model=fixture['state_dict'], epoch=3), src)
    script = osp.join(REPO, 'tools', 'model_converters', 'eat_to_mmevo.py')
    code, out, err = _run_script(script, src, dst, capsys=capsys)
    assert code == 0, err
    assert 'converted 90 tensors' in out
    state = torch.load(dst, weights_only=True)['state_dict']
    assert not any('index' in k for k in state)
    assert state['backbone.stem.weight'].shape == (32, 3, 16, 16)
    model.load_state_dict(state, strict=True)

    without_index = {k: v for k, v in fixture['state_dict'].items() if 'loc_encoder' not in k}
    assert convert_eat(without_index).keys() == state.keys()
    assert convert_eat(dict(state_dict=fixture['state_dict'])).keys() == state.keys()
    with pytest.raises(ConversionError, match=r"2 keys.*'dist_token', 'head_dist.weight'"):
        convert_eat({**fixture['state_dict'], 'dist_token': torch.zeros(1, 1, 32),
                     'head_dist.weight': torch.zeros(10, 32)})
    torch.save(dict(model={'dist_token': torch.zeros(1)}), src)
    code, _, err = _run_script(script, src, dst, capsys=capsys)
    assert code == 1 and 'not an official EAT checkpoint' in err


def test_official_kwargs_outside_the_published_models_are_refused():
    kwargs = dict(VARIANTS['EAT-Ti']['official']['resolved_kwargs'])
    assert official_kwargs_to_mmevo(kwargs)['backbone']['arch']['embed_dims'] == 192
    for key, value in [('local_type', 'dcn'), ('loc_encoder', 'hilbert'), ('cls_token', True)]:
        with pytest.raises(ConversionError, match=f'{key}={value!r}'):
            official_kwargs_to_mmevo({**kwargs, key: value})
    with pytest.raises(ConversionError, match=r"unknown official EAT kwargs: \['depth_dist'\]"):
        official_kwargs_to_mmevo({**kwargs, 'depth_dist': 1})

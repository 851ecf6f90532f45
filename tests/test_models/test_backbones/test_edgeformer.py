# Copyright (c) mmevo contributors. All rights reserved.
"""EdgeFormer / ParC-Net and GCC-ConvNeXt: what the generic matrices cannot know.

Parity with the official fixtures (edgeformer_xs at 256 and 224, edgeformer_small, the
gcc_convnext_small fixture made from the official ParC_ConvNeXt) and the manifest key coverage run
in tests/test_models/test_parity.py; shapes, freezing, with_cp, bf16 and bad arguments in
tests/test_zoo.py.
"""
import math
import os.path as osp
import sys

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from mmevo.models import EdgeFormer, EdgeFormerClsHead, GCCConvNeXt
from mmevo.models.layers import GCCBlock, GlobalCircularConv, circular_conv, plain_ops
from mmevo.testing import ClassifierUnderTest, load_parity_fixture, load_parity_manifest
from mmevo.testing.zoo import ZOO
from mmevo.utils.converters import ConversionError, cli, get_converter
from mmevo.utils.flops import cvnets_profiler_macs

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
CONVERTER = get_converter('edgeformer')
VARIANTS = {v['variant']: v for v in load_parity_manifest('edgeformer')}


def _tiny(**kwargs) -> EdgeFormer:
    torch.manual_seed(0)
    return EdgeFormer(ZOO['EdgeFormer'].tiny('s'), **kwargs)


def _reference_circular(x, weight, bias, dim):
    """``y[i] = sum_t k[t] x[(i + t) mod L]`` written out with rolls."""
    length = x.shape[dim]
    k = weight.reshape(x.shape[1], length)
    y = sum(torch.roll(x, -t, dims=dim) * k[:, t].view(1, -1, 1, 1) for t in range(length))
    return y if bias is None else y + bias.view(1, -1, 1, 1)


# ------------------------------------------------------------------------ circular convolution


@pytest.mark.parametrize('dim', [2, 3])
@pytest.mark.parametrize('length', [1, 5, 8])
def test_circular_conv_is_the_formula(dim, length):
    torch.manual_seed(0)
    shape = (2, 3, length, 6) if dim == 2 else (2, 3, 6, length)
    x = torch.randn(shape, dtype=torch.float64)
    weight = torch.randn((3, 1, length, 1) if dim == 2 else (3, 1, 1, length),
                         dtype=torch.float64)
    bias = torch.randn(3, dtype=torch.float64)
    expected = _reference_circular(x, weight, bias, dim)
    for fast in (False, True):
        torch.testing.assert_close(circular_conv(x, weight, bias, fast=fast), expected)


@pytest.mark.parametrize('dim', [2, 3])
def test_circular_conv_gemm_equals_concatenation_values_and_gradients(dim):
    """The fast form (circulant GEMM) equals the official concatenate + convolve formulation in
    values and in the gradients of input, kernel and bias (float64), also on channels-last
    input."""
    torch.manual_seed(0)
    x = torch.randn(2, 4, 7, 9, dtype=torch.float64)
    length = x.shape[dim]
    weight = torch.randn((4, 1, length, 1) if dim == 2 else (4, 1, 1, length),
                         dtype=torch.float64)
    bias = torch.randn(4, dtype=torch.float64)
    grad = torch.randn(2, 4, 7, 9, dtype=torch.float64)
    results = []
    for fast, layout in ((False, torch.contiguous_format), (True, torch.contiguous_format),
                         (True, torch.channels_last)):
        inputs = [t.clone().requires_grad_() for t in (x, weight, bias)]
        y = circular_conv(inputs[0].contiguous(memory_format=layout), *inputs[1:], fast=fast)
        y.backward(grad)
        results.append((y.detach(), [t.grad for t in inputs]))
    (y_ref, g_ref), *others = results
    for y, grads in others:
        torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
        for g, r in zip(grads, g_ref):
            torch.testing.assert_close(g, r, rtol=1e-12, atol=1e-12)


def test_circular_conv_rejects_a_kernel_of_another_length():
    with pytest.raises(ValueError, match=r'kernel of shape \(3, 1, 8, 1\).*got \(3, 1, 5, 1\)'):
        circular_conv(torch.randn(1, 3, 8, 8), torch.randn(3, 1, 5, 1))


def test_kernels_and_embeddings_are_resized_per_axis():
    """Non-square maps: H kernels / embeddings take the height, W ones the width, with the
    official bilinear align_corners resize; at the native size they are used as stored."""
    torch.manual_seed(0)
    block = GCCBlock(16, kernel_size=8, ffn_channels=16).eval()
    x = torch.randn(1, 16, 6, 10)
    seen = {}

    def record(module, args, output):
        seen[module.axis + str(len(seen))] = (tuple(args[0].shape[-2:]),
                                              tuple(module.instance_kernel(
                                                  args[0].shape[module.dim]).shape))

    for name in ('gcc_1_h', 'gcc_1_w', 'gcc_2_h', 'gcc_2_w'):
        getattr(block, name).register_forward_hook(record)
    block(x)
    assert seen == {'H0': ((6, 10), (8, 1, 6, 1)), 'W1': ((6, 10), (8, 1, 1, 10)),
                    'W2': ((6, 10), (8, 1, 1, 10)), 'H3': ((6, 10), (8, 1, 6, 1))}
    k = block.gcc_1_w.instance_kernel(10)
    torch.testing.assert_close(
        k, F.interpolate(block.gcc_1_w.weight, (1, 10), mode='bilinear', align_corners=True))
    assert block.gcc_1_h.instance_kernel(8) is block.gcc_1_h.weight
    assert block.pe_1_h(torch.zeros(1, 8, 6, 10)).shape == (1, 8, 6, 10)


def test_fixed_kernels_refuse_other_lengths():
    conv = GlobalCircularConv(4, 'W', 7, bias=True, resize=False)
    assert conv(torch.randn(1, 4, 5, 7)).shape == (1, 4, 5, 7)
    with pytest.raises(ValueError, match=r"fixed kernel of length 7 .* length 9 along W"):
        conv(torch.randn(1, 4, 5, 9))


def test_gcc_block_is_circularly_shift_equivariant_on_non_square_maps():
    """Without position embeddings a GCC block commutes with circular shifts along both axes:
    each direction wraps around its own length."""
    torch.manual_seed(0)
    block = GCCBlock(16, kernel_size=8, ffn_channels=16, use_pe=False).eval()
    x = torch.randn(1, 16, 6, 10, dtype=torch.float64)
    block.double()
    with torch.no_grad():
        y = block(x)
        shifted = block(torch.roll(x, (2, 3), dims=(2, 3)))
    torch.testing.assert_close(shifted, torch.roll(y, (2, 3), dims=(2, 3)))


def test_gcc_block_fast_route_equals_plain_ops():
    """Training (values, input and parameter gradients) and inference on a non-square map."""
    torch.manual_seed(0)
    block = GCCBlock(16, kernel_size=8, ffn_channels=24, drop=0.).train()
    x = torch.randn(2, 16, 6, 10)
    results = []
    for plain in (False, True):
        block.zero_grad()
        inp = x.clone().requires_grad_()
        with plain_ops() if plain else torch.enable_grad():
            y = block(inp)
            y.square().sum().backward()
        results.append((y.detach(), inp.grad, [p.grad.clone() for p in block.parameters()]))
    (y_a, gx_a, gp_a), (y_b, gx_b, gp_b) = results
    torch.testing.assert_close(y_a, y_b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx_a, gx_b, atol=1e-4, rtol=1e-4)
    for a, b in zip(gp_a, gp_b):
        torch.testing.assert_close(a, b, atol=1e-3, rtol=1e-4)
    block.eval()
    with torch.no_grad():
        fast = block(x)
        with plain_ops():
            plain = block(x)
    torch.testing.assert_close(fast, plain, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------- backbone


def test_non_square_dense_outputs():
    """Any size: ``ceil(size / stride)`` per side (kernels resized per axis)."""
    model = _tiny(out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 160, 97))
    assert [tuple(o.shape[-2:]) for o in outs] == [(40, 25), (20, 13), (10, 7), (5, 4)]


@pytest.mark.parametrize('output_stride,strides,dilations', [
    (32, (4, 8, 16, 32), (1, 1, 1)),
    (16, (4, 8, 16, 16), (1, 1, 1)),
    (8, (4, 8, 8, 8), (1, 1, 2)),
])
def test_output_stride(output_stride, strides, dilations):
    """The official rule: a stride-2 block turned into stride 1 keeps the dilation before it,
    the next one is dilated by the removed stride."""
    model = _tiny(out_indices=(0, 1, 2, 3), output_stride=output_stride).eval()
    assert model.stage_strides == strides
    down = [model.stages[i][0].conv_3x3.conv for i in (1, 2, 3)]
    assert tuple(c.dilation[0] for c in down) == dilations
    assert tuple(c.stride[0] for c in down) == tuple(2 if s > p else 1 for p, s in
                                                      zip(strides[:3], strides[1:]))
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[-1] for o in outs] == [64 // s for s in strides]


def test_head():
    head = EdgeFormerClsHead(num_classes=7, in_channels=32)
    assert head.mid_channels == 128 and EdgeFormerClsHead(7, 432).mid_channels == 960
    logits = head.eval()((torch.randn(2, 32, 3, 5), ))
    assert logits.shape == (2, 7)
    with pytest.raises(ValueError, match=r'expects \(B, 32, H, W\)'):
        head((torch.randn(2, 16, 3, 3), ))
    with pytest.raises(ValueError, match=r'dropout=1.0'):
        EdgeFormerClsHead(7, 32, dropout=1.0)


# ------------------------------------------------------------------------------ converter


def _fixture_state_dict():
    return dict(load_parity_fixture('edgeformer_small')['state_dict'])


def test_converter_drops_the_residual_aliases():
    state_dict = _fixture_state_dict()
    aliases = [k for k in state_dict if k.startswith('residual.')]
    assert len(aliases) == 18
    converted = CONVERTER.convert(state_dict)
    assert len(converted) == len(state_dict) - 18
    assert not any('residual' in k for k in converted)
    torch.testing.assert_close(converted['backbone.stages.3.0.exp_1x1.conv.weight'],
                               state_dict['layer_5.0.block.exp_1x1.block.conv.weight'])


def test_converter_refuses_aliases_that_differ_or_dangle():
    state_dict = _fixture_state_dict()
    key = 'residual.block.red_1x1.block.norm.running_var'
    state_dict[key] = state_dict[key] + 1
    with pytest.raises(ConversionError, match=rf"'{key}' must equal .*'layer_5.0.block.red_1x1"):
        CONVERTER.convert(state_dict)
    state_dict = _fixture_state_dict()
    state_dict['residual.block.extra.weight'] = torch.zeros(1)
    with pytest.raises(ConversionError, match=r"no such key"):
        CONVERTER.convert(state_dict)


def test_converter_names_unknown_keys():
    state_dict = _fixture_state_dict()
    state_dict['layer_3.1.spatial_global_rep.0.meta_kernel_3_H'] = torch.zeros(1)
    with pytest.raises(ConversionError, match=r'meta_kernel_3_H'):
        CONVERTER.convert(state_dict)


def test_converter_takes_the_encoder_of_official_task_models():
    state_dict = _fixture_state_dict()
    task = {f'encoder.{k}': v for k, v in state_dict.items()
            if not k.startswith(('classifier.', 'conv_1x1_exp.'))}
    task['seg_head.classifier.weight'] = torch.zeros(3)
    converted = CONVERTER.convert(dict(state_dict=task))
    assert all(k.startswith('backbone.') for k in converted)
    task['decoder.weight'] = torch.zeros(3)
    with pytest.raises(ConversionError, match=r"decoder.weight"):
        CONVERTER.convert(task)


def test_converter_cli(tmp_path, capsys):
    src, dst = tmp_path / 'official.pt', tmp_path / 'converted.pth'
    fixture = load_parity_fixture('edgeformer_small')
    torch.save(fixture['state_dict'], src)
    # the script is `run('edgeformer')` of this CLI
    script = open(osp.join(REPO, 'tools', 'model_converters', 'edgeformer_to_mmevo.py')).read()
    assert "run('edgeformer')" in script
    assert cli.main('edgeformer', [str(src), str(dst)]) == 0
    assert 'converted 381 tensors' in capsys.readouterr().out
    model = CONVERTER.build_official(fixture['official'])
    model.load_state_dict(torch.load(dst, weights_only=True)['state_dict'], strict=True)


DOWNSTREAM = [
    ('ssdlite/edgeformer_s_ssdlite_4xb32-200e_coco-320x320.py', 'EdgeFormer-S'),
    ('deeplabv3/edgeformer_s_deeplabv3_4xb8-16k_voc12aug-512x512.py', 'EdgeFormer-S'),
    ('mask_rcnn/edgeformer_s_1x.py', 'EdgeFormer-S'),
    ('mask_rcnn/edgeformer_h_1x.py', 'EdgeFormer-H'),
    ('upernet/edgeformer_s_upernet_8xb4-160k_ade20k-512x512.py', 'EdgeFormer-S'),
    ('upernet/edgeformer_h_upernet_8xb4-160k_ade20k-512x512.py', 'EdgeFormer-H'),
]


@pytest.fixture(scope='module')
def converted_checkpoints(tmp_path_factory):
    """Converted (zero-valued) official S and H checkpoints, from the manifest's keys."""
    folder = tmp_path_factory.mktemp('edgeformer')
    paths = {}
    for variant in ('EdgeFormer-S', 'EdgeFormer-H'):
        keys = VARIANTS[variant]['keys']
        official = {k: torch.full(shape, 0.5 if k.endswith('running_var') else 0.,
                                  dtype=torch.int64 if k.endswith('num_batches_tracked')
                                  else torch.float32) for k, shape in keys}
        paths[variant] = str(folder / f'{variant}.pth')
        torch.save(dict(state_dict=CONVERTER.convert(official)), paths[variant])
    return paths


@pytest.mark.parametrize('path,variant', DOWNSTREAM, ids=[p for p, _ in DOWNSTREAM])
def test_converted_weights_load_in_every_task_config(path, variant, converted_checkpoints,
                                                     monkeypatch):
    """Strictly (no missing key), and the classifier parts left out are named."""
    import mmengine.logging
    messages = []
    monkeypatch.setattr(mmengine.logging, 'print_log', lambda msg, **kw: messages.append(msg))
    cfg = Config.fromfile(osp.join(REPO, 'configs', path))
    backbone_cfg = dict(cfg.model.backbone)
    backbone_cfg.pop('type')
    backbone_cfg['norm_cfg'] = dict(type='BN')
    backbone_cfg['init_cfg']['checkpoint'] = converted_checkpoints[variant]
    model = EdgeFormer(**backbone_cfg)
    model.init_weights()
    assert all(p.abs().sum() == 0 for p in model.parameters())  # the loaded zeros
    assert any('not used here: head.conv_1x1_exp.* (6 tensors), head.fc.* (2 tensors)' in m
               for m in messages), messages


# ---------------------------------------------------------------------------------- FLOPs


@pytest.mark.parametrize('arch,madds', [('xs', 0.962e9), ('h', 8.942e9)])
def test_cvnets_convention_reproduces_the_official_profiler(arch, madds):
    """The official profiler's XS / H figures (spec §0); S is checked through get_flops.py."""
    torch.set_num_threads(1)
    model = ClassifierUnderTest(EdgeFormer(arch), EdgeFormerClsHead(
        1000, EdgeFormer.arch_zoo[arch]['channels'][-1])).eval()
    count = cvnets_profiler_macs(model, torch.randn(1, 3, 256, 256))
    assert abs(count - madds) / madds < 1e-3, count


def test_cvnets_convention_counts_the_channel_attention_per_pixel():
    """Only the GCC block has a special rule: per pixel, on the FFN width; BatchNorm is free."""
    block = GCCBlock(32, kernel_size=4, ffn_channels=64).eval()
    x = torch.randn(1, 32, 4, 4)
    n = 16  # pixels
    spatial = 32 * n * (4 + 4)
    ffn = (2 * 32 * 64 + 32 + 64) * n
    attention = 2 * 64 * (64 // 16) * n
    assert cvnets_profiler_macs(block, x) == spatial + ffn + attention
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2, 1), torch.nn.BatchNorm2d(8)).eval()
    assert cvnets_profiler_macs(conv, torch.randn(1, 3, 8, 8)) == 9 * 3 * 8 * 16 + 8 * 16


def test_get_flops_reproduces_the_published_madds(capsys):
    """EdgeFormer-S at 256: the published 1.74 G MAdds (ml-cvnets' profiler convention) within
    1%, and the plain fvcore count (1.688 G for the official code, spec §0) beside it."""
    sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
    import get_flops
    torch.set_num_threads(1)
    out = get_flops.main([
        osp.join(REPO, 'configs', 'edgeformer', 'edgeformer-s_8xb128_in1k-256px.py'),
        '--shape', '256', '--convention', 'ml-cvnets'])
    printed = capsys.readouterr().out
    assert 'MAdds:        1.741 G  (ml-cvnets profiler convention' in printed
    assert 'FLOPs:        1.687 G' in printed
    assert abs(out['cvnets_madds'] - 1.74e9) / 1.74e9 < 0.01
    assert abs(out['flops'] - 1.688e9) / 1.688e9 < 2e-3
    assert out['params'] == 5037088


# ---------------------------------------------------------------------------- GCC-ConvNeXt


def test_gcc_convnext_xt_matches_the_published_size():
    model = GCCConvNeXt('xt', gap_before_final_norm=True)
    params = sum(p.numel() for p in model.parameters()) + 384 * 1000 + 1000  # + classifier
    assert params == 7412824  # 7.4 M published (spec §5.3: 7.413 M)
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 224, 224))
    assert out[0].shape == (1, 384, 1, 1)


def test_gcc_convnext_input_sizes():
    """224: kernels as stored; other sizes: resized per axis, or the official error."""
    arch = ZOO['GCCConvNeXt'].tiny('xt')
    model = GCCConvNeXt(arch, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 200, 330))
    assert [tuple(o.shape[-2:]) for o in outs] == [(50, 83), (25, 42), (13, 21), (7, 11)]
    fixed = GCCConvNeXt(arch, resize_kernels=False).eval()
    with torch.no_grad():
        assert fixed(torch.randn(1, 3, 224, 224))[0].shape == (1, 32, 7, 7)
        with pytest.raises(ValueError, match=r'fixed length of 14 .* length 16 along H'):
            fixed(torch.randn(1, 3, 256, 256))


def test_gcc_convnext_parity_fixture_comes_from_the_official_code():
    fixture = load_parity_fixture('gcc_convnext_small')
    assert fixture['official']['repo'] == 'hkzhang91/ParC-Net'
    assert fixture['official']['commit'].startswith('f6780d0')
    assert math.isfinite(fixture['outputs'][0].abs().max().item())

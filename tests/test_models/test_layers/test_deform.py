# Copyright (c) mmevo contributors. All rights reserved.
import pytest
import torch
import torch.nn.functional as F

from mmevo.models.backbones.eatformer import MDMSA
from mmevo.models.layers import deform_conv2d, mmcv_ops_available, modulated_deform_sample
from mmevo.models.layers.deform import MMCV_OPS_HINT

needs_mmcv = pytest.mark.skipif(not mmcv_ops_available(), reason='needs mmcv with compiled ops')


def _sampling_inputs(dtype=torch.float32, B=2, g=2, cg=3, h=5, w=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(B, g * cg, h, w, generator=gen, dtype=dtype)
    # sample points inside and outside [-1, 1] (zero padding), not on integer pixels
    grid = torch.rand(B * g, h, w, 2, generator=gen, dtype=dtype) * 2.4 - 1.2
    mask = torch.rand(B * g, 1, h, w, generator=gen, dtype=dtype)
    return x, grid, mask, g


def test_grid_sample_sampler_is_the_official_formula():
    x, grid, mask, g = _sampling_inputs()
    out = modulated_deform_sample(x, grid, mask, g, 'grid_sample')
    B, C, h, w = x.shape
    expected = F.grid_sample(x.view(B * g, C // g, h, w), grid, align_corners=True) * mask
    torch.testing.assert_close(out, expected.view(B, C, h, w), rtol=0, atol=0)


@needs_mmcv
@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_mmcv_sampler_equals_grid_sample(dtype, tol):
    x, grid, mask, g = _sampling_inputs(dtype)
    tensors = [t.clone().requires_grad_() for t in (x, grid, mask)]
    ref = [t.clone().requires_grad_() for t in (x, grid, mask)]
    out = modulated_deform_sample(*tensors, g, 'mmcv')
    exp = modulated_deform_sample(*ref, g, 'grid_sample')
    torch.testing.assert_close(out, exp, atol=tol, rtol=tol)
    weight = torch.randn_like(exp)
    (out * weight).sum().backward()
    (exp * weight).sum().backward()
    for a, b in zip(tensors, ref):
        torch.testing.assert_close(a.grad, b.grad, atol=tol * 10, rtol=tol * 10)


@pytest.mark.parametrize('sampler', ['grid_sample'] + (['mmcv'] if mmcv_ops_available() else []))
def test_sampler_gradcheck_float64(sampler):
    x, grid, mask, g = _sampling_inputs(torch.float64, B=1, g=2, cg=1, h=3, w=4, seed=1)
    inputs = tuple(t.requires_grad_() for t in (x, grid, mask))
    assert torch.autograd.gradcheck(
        lambda a, b, c: modulated_deform_sample(a, b, c, g, sampler), inputs, eps=1e-6,
        atol=1e-5)


@needs_mmcv
def test_mdmsa_samplers_agree_forward_and_backward():
    torch.manual_seed(0)
    a = MDMSA(16, 4, window_size=3, sampler='grid_sample')
    b = MDMSA(16, 4, window_size=3, sampler='mmcv')
    b.load_state_dict(a.state_dict())
    with torch.no_grad():
        for m in (a, b):
            m.gamma.fill_(0.7)
            m.offset.pwconv.weight.mul_(20)  # offsets well away from zero
    x = torch.randn(2, 16, 7, 8)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = a(xa), b(xb)
    torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-5)
    ya.square().sum().backward()
    yb.square().sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-4, rtol=1e-4)
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad, atol=1e-4, rtol=1e-4, msg=name)


def test_unknown_sampler():
    with pytest.raises(ValueError, match='sampler must be one of'):
        MDMSA(16, 4, 3, sampler='bilinear')


@pytest.mark.parametrize('modulated', [False, True])
def test_deform_conv_impls_agree(modulated):
    pytest.importorskip('torchvision')
    if not mmcv_ops_available():
        pytest.skip('needs mmcv with compiled ops')
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 6, 7, generator=gen)
    weight = torch.randn(4, 4, 3, 3, generator=gen)
    offset = torch.randn(2, 2 * 2 * 9, 6, 7, generator=gen) * 2
    mask = torch.rand(2, 2 * 9, 6, 7, generator=gen) if modulated else None
    out_tv = deform_conv2d(x, offset, mask, weight, 1, 2, impl='torchvision')
    out_mmcv = deform_conv2d(x, offset, mask, weight, 1, 2, impl='mmcv')
    torch.testing.assert_close(out_tv, out_mmcv, atol=1e-4, rtol=1e-4)


def test_missing_mmcv_ops_error(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith('mmcv.ops'):
            raise ModuleNotFoundError("No module named 'mmcv._ext'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, '__import__', fake_import)
    mmcv_ops_available.cache_clear()  # the answer is cached per process
    assert not mmcv_ops_available()
    x, grid, mask, g = _sampling_inputs()
    with pytest.raises(ImportError, match='mmcv with compiled ops is required'):
        modulated_deform_sample(x, grid, mask, g, 'mmcv')
    # the grid_sample path needs no ops
    modulated_deform_sample(x, grid, mask, g, 'grid_sample')
    assert 'MMCV_WITH_OPS=1' in MMCV_OPS_HINT
    monkeypatch.undo()
    mmcv_ops_available.cache_clear()

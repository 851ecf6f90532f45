# Copyright (c) mmevo contributors. All rights reserved.
"""Every family against the official implementations, driven by data.

* every parity fixture (official weights, inputs, outputs; ``tests/data/parity``, else
  ``../shared/parity``): converted by the family's registered converter, the port reproduces the
  official outputs and per-stage maps within the fixture's tolerances, with the fast path and
  with it switched off (values and input gradients equal);
* every published variant of the manifest: the converter maps every official key to a key of the
  port with the right shape, and the port has the official parameter count.

A family plugs in by registering its converter (``mmevo/utils/converters/registry.py``).
"""
import pytest
import torch

from mmevo.models.layers import plain_ops
from mmevo.testing import assert_parity, load_parity_fixture, load_parity_manifest
from mmevo.testing.parity import all_stage_outputs, parity_cases
from mmevo.utils.converters import converters, get_converter

FAMILIES = {f for conv in converters().values() for f in conv.fixture_families}
CASES = [case for case, family in parity_cases() if family in FAMILIES]
VARIANTS = {v['variant']: v for v in load_parity_manifest() if v['family'] in FAMILIES}


def build_port(fixture: dict):
    """The port of a fixture's official model with its converted weights, every stage out."""
    conv = get_converter(fixture['family'])
    model = conv.build_official(fixture['official'])
    result = model.load_state_dict(conv.convert(fixture['state_dict']), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    return conv, model.eval()


def _stage_fn(conv, model):
    if conv.stage_outputs is not None:
        return lambda x: conv.stage_outputs(model, x)
    return lambda x: all_stage_outputs(model.backbone, x)


@pytest.fixture(scope='module', params=CASES)
def fixture(request):
    return load_parity_fixture(request.param)


def test_parity(fixture):
    conv, model = build_port(fixture)
    assert sum(p.numel() for p in model.parameters()) == conv.port_params(fixture)
    worst = assert_parity(fixture, model, stage_fn=_stage_fn(conv, model))
    assert worst['outputs'] <= fixture['atol'] + fixture['rtol'] * 10


def test_plain_ops_equal_fast_path(fixture):
    """The global off switch runs every module's plain ops: same outputs and gradients."""
    _, model = build_port(fixture)
    for x in fixture['inputs']:
        results = []
        for plain in (False, True):
            inp = x.clone().requires_grad_()
            with plain_ops() if plain else torch.enable_grad():
                out = model(inp)
                out = [out] if torch.is_tensor(out) else list(out)
                grad = torch.autograd.grad(sum(o.sum() for o in out), inp)[0]
            with torch.no_grad(), plain_ops() if plain else torch.no_grad():
                inference = model(x)
            results.append((out, grad, inference))
        (fast, g_fast, inf_fast), (plain, g_plain, inf_plain) = results
        for a, b in zip(fast, plain):
            torch.testing.assert_close(a, b, atol=fixture['atol'], rtol=fixture['rtol'])
        torch.testing.assert_close(g_fast, g_plain, atol=fixture['atol'], rtol=1e-4)
        inf_fast = [inf_fast] if torch.is_tensor(inf_fast) else inf_fast
        inf_plain = [inf_plain] if torch.is_tensor(inf_plain) else inf_plain
        for a, b in zip(inf_fast, inf_plain):
            torch.testing.assert_close(a, b, atol=fixture['atol'], rtol=fixture['rtol'])


def test_parity_detects_a_wrong_tensor(fixture):
    """The comparison is sensitive: the port with one conv weight scaled by 1.1 fails."""
    _, model = build_port(fixture)
    weights = [p for n, p in model.named_parameters() if n.endswith('weight') and p.dim() == 4]
    with torch.no_grad():
        weights[len(weights) // 2].mul_(1.1)
    with pytest.raises(AssertionError):
        assert_parity(fixture, model)


def _manifest_state_dict(variant: dict) -> dict:
    keys = variant['keys'] if 'keys' in variant else VARIANTS[variant['keys_same_as']]['keys']
    return {k: torch.zeros(shape, dtype=torch.int64 if k.endswith('num_batches_tracked')
                           or k in variant.get('dtypes_not_float32', {}) else torch.float32)
            for k, shape in keys}


@pytest.mark.parametrize('name', sorted(VARIANTS))
def test_converter_covers_manifest(name):
    """Every official key of every published variant maps to a key of the right shape (or is
    dropped on purpose), and the port has the official parameter count."""
    variant = VARIANTS[name]
    conv = get_converter(variant['family'])
    model = conv.build_official(variant['official'])
    converted = conv.convert(_manifest_state_dict(variant))
    own = model.state_dict()
    assert set(converted) == set(own)
    for key, value in converted.items():
        assert tuple(value.shape) == tuple(own[key].shape), key
    assert sum(p.numel() for p in model.parameters()) == conv.port_params(variant)
    model.load_state_dict(converted, strict=True)

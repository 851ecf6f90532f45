# Copyright (c) mmevo contributors. All rights reserved.
"""One conformance matrix for every backbone of the zoo (``mmevo.testing.zoo.ZOO``).

Each family is checked the same way; a new family adds a ``ZooEntry`` (and nothing here):

* every published arch forwards at its native size with the declared output strides and
  channels (big archs on a narrowed custom dict of the same structure, at full width where CI
  affords it), and at an odd, non-square size in the dense configuration;
* backward gives finite gradients to every trainable parameter;
* ``frozen_stages`` freezes exactly the documented parts (parameters and BN statistics),
  ``norm_eval`` keeps BatchNorms in eval mode, ``with_cp`` gives the same outputs and gradients;
* a channels-last input equals a contiguous one; outputs are contiguous NCHW maps unless
  ``out_channels_last=True``; bf16 autocast is finite; eval is deterministic;
* bad arguments and inputs get errors that name the problem.

Strict loading of converted official weights (zero missing keys) is checked for every published
variant by ``tests/test_models/test_parity.py::test_converter_covers_manifest``.
"""
import contextlib
import math

import numpy as np
import pytest
import torch
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm

from mmevo.models.layers import plain_ops
from mmevo.registry import MODELS
from mmevo.testing.zoo import ZOO

ENTRIES = sorted(ZOO.values(), key=lambda e: e.backbone)
ARCHS = [(e, a) for e in ENTRIES for a in e.archs]


def _id(value):
    return value.backbone if hasattr(value, 'backbone') else str(value)


def _tiny(entry, **kwargs):
    """The entry's narrowed first arch, every stage out."""
    torch.manual_seed(0)
    model = entry.build(entry.tiny(entry.archs[0]), **kwargs)
    if 'out_indices' not in kwargs:
        model = entry.build(entry.tiny(entry.archs[0]),
                            out_indices=tuple(range(model.num_stages)), **kwargs)
    return model


def _expected_shapes(model, batch, height, width):
    return [(batch, model.stage_channels[i], math.ceil(height / model.stage_strides[i]),
             math.ceil(width / model.stage_strides[i])) for i in model.out_indices]


def test_every_registered_backbone_has_an_entry():
    import mmevo.models  # noqa: F401  (registers the backbones)
    from mmevo.models.backbones import StagedBackbone
    backbones = {name for name, cls in MODELS.module_dict.items()
                 if isinstance(cls, type) and issubclass(cls, StagedBackbone)}
    assert backbones == set(ZOO), 'every backbone needs a ZooEntry in mmevo/testing/zoo.py'


@pytest.mark.parametrize('entry', ENTRIES, ids=_id)
def test_every_arch_is_in_the_matrix(entry):
    """Each arch of the arch_zoo (aliases aside) is one of the entry's published archs."""
    zoo = entry.cls.arch_zoo
    distinct = {id(settings) for settings in zoo.values()}
    covered = {id(zoo[arch]) for arch in entry.archs}
    missing = [name for name, settings in zoo.items() if id(settings) not in covered]
    assert covered == distinct, f'archs of {entry.backbone} missing from its ZooEntry: {missing}'


@pytest.mark.parametrize('entry,arch', ARCHS, ids=[f'{e.backbone}-{a}' for e, a in ARCHS])
def test_arch_forward_native_size(entry, arch):
    settings = entry.cls.parse_arch(arch)
    full = arch in entry.full_width_archs
    model = entry.build(arch if full else entry.narrow(settings))
    model = entry.build(arch if full else entry.narrow(settings),
                        out_indices=tuple(range(model.num_stages))).eval()
    assert model.out_channels == model.stage_channels
    assert list(model.out_strides) == sorted(model.out_strides)
    h, w = entry.input_size
    with torch.no_grad():
        outs = model(torch.randn(1, model.in_channels, h, w))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == _expected_shapes(model, 1, h, w)
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize('entry,arch', ARCHS, ids=[f'{e.backbone}-{a}' for e, a in ARCHS])
def test_dense_odd_size(entry, arch):
    settings = entry.cls.parse_arch(arch)
    model = entry.build(entry.narrow(settings), **entry.dense_kwargs)
    model = entry.build(entry.narrow(settings), out_indices=tuple(range(model.num_stages)),
                        **entry.dense_kwargs).eval()
    h, w = entry.odd_size
    x = torch.randn(2, model.in_channels, h, w)
    expected_error = entry.odd_size_error(settings) if entry.odd_size_error else None
    with torch.no_grad():
        if expected_error:
            with pytest.raises(ValueError, match=expected_error):
                model(x)
            return
        outs = model(x)
    assert [tuple(o.shape) for o in outs] == _expected_shapes(model, 2, h, w)


@pytest.mark.parametrize('entry', ENTRIES, ids=_id)
def test_backward_reaches_every_parameter(entry):
    model = _tiny(entry).train()
    h, w = entry.small_input
    outs = model(torch.randn(2, model.in_channels, h, w))
    sum(o.float().square().mean() for o in outs).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f'{name} got no gradient'
        assert torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize('entry', ENTRIES, ids=_id)
def test_frozen_stages(entry):
    num_stages = _tiny(entry).num_stages
    h, w = entry.small_input
    x = torch.randn(2, 3, h, w)
    for frozen in range(-1, num_stages + 1):
        model = _tiny(entry, frozen_stages=frozen).train()
        frozen_params = {id(p) for m in model.frozen_modules()
                         for p in ([m] if isinstance(m, torch.nn.Parameter) else m.parameters())}
        if frozen >= 0:
            assert frozen_params, 'frozen_stages >= 0 must freeze the stem'
            stem_params = {id(p) for p in model.stem.parameters()}
            assert stem_params <= frozen_params
        for i in range(num_stages):
            stage_params = {id(p) for p in model.stages[i].parameters()}
            assert (stage_params <= frozen_params) == (i < frozen), (frozen, i)
        for name, param in model.named_parameters():
            assert param.requires_grad == (id(param) not in frozen_params), (frozen, name)
        frozen_bns = [m for part in model.frozen_modules() if isinstance(part, torch.nn.Module)
                      for m in part.modules() if isinstance(m, _BatchNorm)]
        stats = [m.running_mean.clone() for m in frozen_bns]
        model(x)
        assert all(not m.training for m in frozen_bns)
        for m, before in zip(frozen_bns, stats):
            assert torch.equal(m.running_mean, before)


@pytest.mark.parametrize('entry', ENTRIES, ids=_id)
def test_norm_eval(entry):
    model = _tiny(entry, norm_eval=True).train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not bns:
        pytest.skip(f'{entry.backbone} has no BatchNorm')
    stats = [m.running_mean.clone() for m in bns]
    h, w = entry.small_input
    model(torch.randn(2, 3, h, w))
    assert all(not m.training for m in bns)
    assert all(torch.equal(m.running_mean, s) for m, s in zip(bns, stats))
    assert all(m.training for m in _tiny(entry).train().modules() if isinstance(m, _BatchNorm))


@pytest.mark.parametrize('entry', ENTRIES, ids=_id)
def test_with_cp_same_outputs_and_gradients(entry):
    plain = _tiny(entry).eval()
    ckpt = _tiny(entry, with_cp=True).eval()
    ckpt.load_state_dict(plain.state_dict())
    h, w = entry.small_input
    x = torch.randn(2, 3, h, w)
    results = []
    for model in (plain, ckpt):
        inp = x.clone().requires_grad_()
        outs = model(inp)
        sum(o.square().sum() for o in outs).backward()
        results.append((outs, inp.grad, [p.grad for p in model.parameters()]))
    (outs_a, gx_a, gp_a), (outs_b, gx_b, gp_b) = results
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(gx_a, gx_b)
    for a, b in zip(gp_a, gp_b):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize('entry', ENTRIES, ids=_id)
def test_with_cp_updates_bn_statistics_once(entry):
    """Training with with_cp: the recomputation in backward does not update BatchNorm running
    statistics a second time (they equal a plain training step's)."""
    plain = _tiny(entry).train()
    ckpt = _tiny(entry, with_cp=True).train()
    ckpt.load_state_dict(plain.state_dict())
    h, w = entry.small_input
    x = torch.randn(2, 3, h, w)
    for model in (plain, ckpt):
        torch.manual_seed(1)  # the same stochastic depth draws
        sum(o.square().sum() for o in model(x.clone().requires_grad_())).backward()
    for (name, a), b in zip(plain.named_buffers(), ckpt.buffers()):
        torch.testing.assert_close(a, b, msg=name)


@pytest.mark.parametrize('entry', ENTRIES, ids=_id)
def test_training_fast_path_equals_plain_ops(entry):
    """A training step through the lean autograd nodes equals the plain ops: outputs, input and
    parameter gradients, BatchNorm running statistics."""
    fast = _tiny(entry).train()
    plain = _tiny(entry).train()
    plain.load_state_dict(fast.state_dict())
    h, w = entry.small_input
    x = torch.randn(2, 3, h, w)
    results = []
    for model, switch in ((fast, contextlib.nullcontext()), (plain, plain_ops())):
        inp = x.clone().requires_grad_()
        torch.manual_seed(1)  # the same stochastic depth draws
        with switch:
            outs = model(inp)
            sum(o.square().sum() for o in outs).backward()
        results.append((outs, inp.grad))
    for a, b in zip(results[0][0], results[1][0]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-4, rtol=1e-3)
    # float32 rounding relative to the largest gradient (biases before a BatchNorm get ~0)
    scale = max(p.grad.abs().max().item() for p in plain.parameters() if p.grad is not None)
    for (name, a), b in zip(fast.named_parameters(), plain.parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            torch.testing.assert_close(a.grad, b.grad, atol=1e-5 * scale, rtol=1e-4, msg=name)
    for (name, a), b in zip(fast.named_buffers(), plain.buffers()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=name)


@pytest.mark.parametrize('entry', ENTRIES, ids=_id)
def test_channels_last_input_and_output_layout(entry):
    model = _tiny(entry).eval()
    h, w = entry.small_input
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        ref = model(x)
        got = model(x.contiguous(memory_format=torch.channels_last))
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5)
        # the layout third-party ops (mmcv's RoIAlign, deformable convs) assume
        assert g.is_contiguous() and r.is_contiguous()
    strided = _tiny(entry, out_channels_last=True, channels_last=True).eval()
    strided.load_state_dict(model.state_dict())
    with torch.no_grad():
        outs = strided(x)
    for o, r in zip(outs, ref):
        assert o.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(o, r, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('entry', ENTRIES, ids=_id)
def test_bf16_autocast_is_finite(entry):
    model = _tiny(entry)
    h, w = entry.small_input
    x = torch.randn(2, 3, h, w)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model.eval()(x)
    assert all(torch.isfinite(o.float()).all() for o in outs)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = sum(o.float().mean() for o in model.train()(x))
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize('entry', ENTRIES, ids=_id)
def test_eval_is_deterministic(entry):
    model = _tiny(entry).eval()
    h, w = entry.small_input
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        first, second = model(x), model(x)
    assert all(torch.equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize('entry', ENTRIES, ids=_id)
def test_fuse_keeps_outputs(entry):
    """``fuse()`` folds what is exact for inference and returns the backbone."""
    model = _tiny(entry).eval()
    h, w = entry.small_input
    x = torch.randn(2, 3, h, w)
    with torch.no_grad():
        ref = model(x)
        assert model.fuse() is model and model.fused and not model.training
        got = model(x)
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('entry', ENTRIES, ids=_id)
def test_layer_wise_lr_decay(entry):
    """get_layer_depth puts the stem first, the stages in order and heads last, and the
    layer-decay constructor gives decreasing learning rates towards the input."""
    from mmengine.optim import build_optim_wrapper

    import mmevo.engine  # noqa: F401  (registers the constructor)

    class Detector(torch.nn.Module):

        def __init__(self, backbone):
            super().__init__()
            self.backbone = backbone
            self.head = torch.nn.Linear(4, 2)

    model = Detector(_tiny(entry))
    depths = {n: model.backbone.get_layer_depth(n, 'backbone.')
              for n, _ in model.named_parameters()}
    num_layers = {num for _, num in depths.values()}
    assert len(num_layers) == 1
    num = num_layers.pop()
    assert all(depths[n][0] == 0 for n in depths if n.startswith('backbone.stem.'))
    assert all(depths[n][0] == num - 1 for n in depths if n.startswith('head.'))
    stage_ids = [depths[n][0] for n, _ in model.named_parameters()
                 if n.startswith('backbone.stages.')]
    assert stage_ids == sorted(stage_ids) and 0 < min(stage_ids) and max(stage_ids) < num - 1
    optim = build_optim_wrapper(model, dict(
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
        constructor='mmevo.LayerDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=0.5)))
    lrs = {n: g['lr'] for g in optim.optimizer.param_groups for n in g['param_names']}
    first = next(n for n in lrs if n.startswith('backbone.stem.'))
    assert lrs[first] < min(lrs[n] for n in lrs if n.startswith('backbone.stages.'))
    assert lrs['head.weight'] == pytest.approx(1e-3)


# ------------------------------------------------------------------------------ bad input


def _with_depth(entry, value):
    def make(settings):
        arch = entry.narrow(settings)
        depth = arch[entry.depth_key]
        arch[entry.depth_key] = [value] * len(depth) if isinstance(depth, list) else value
        return arch
    return make


def _generic_bad_args(entry):
    return [
        (dict(arch='huge'), ValueError, r"'huge' is not in default archs"),
        # a typo of a published name (its last letter doubled) gets a suggestion
        (dict(arch=entry.archs[0] + entry.archs[0][-1]), ValueError, r'Did you mean'),
        (dict(arch=3), TypeError, r'arch must be a str'),
        (dict(arch=lambda s: {}), ValueError, r'missing'),
        (dict(arch=lambda s: dict(entry.narrow(s), depht=1)), ValueError, r"unknown arch keys"),
        (dict(arch=_with_depth(entry, 0)), ValueError, entry.depth_key),
        (dict(arch=_with_depth(entry, -1)), ValueError, entry.depth_key),
        (dict(in_channels=0), ValueError, r'in_channels=0'),
        (dict(out_indices='0,3'), ValueError, r"out_indices='0,3'"),
        (dict(out_indices=()), ValueError, r'out_indices=\(\)'),
        (dict(out_indices=(0, 0)), ValueError, r'out_indices=\(0, 0\).*distinct'),
        (dict(out_indices=(99, )), ValueError, r'out_indices=\(99,\)'),
        (dict(frozen_stages=99), ValueError, r'frozen_stages=99'),
        (dict(frozen_stages=-2), ValueError, r'frozen_stages=-2'),
        (dict(drop_path_rate=1.0), ValueError, r'drop_path_rate=1.0'),
        (dict(drop_path_rate=-0.2), ValueError, r'drop_path_rate=-0.2'),
        (dict(drop_path_rate=1.5), ValueError, r'drop_path_rate=1.5'),
        (dict(drop_path_rate=float('nan')), ValueError, r'drop_path_rate=nan'),
        (dict(norm_eval='yes'), ValueError, r"norm_eval='yes'"),
        (dict(with_cp=1), ValueError, r'with_cp=1'),
        (dict(init_cfg=dict(type='Pretrained')), ValueError, r'checkpoint'),
    ]


BAD_ARGS = [(e, *case) for e in ENTRIES for case in _generic_bad_args(e)]
BAD_ARGS += [(e, b.kwargs, b.error, b.match) for e in ENTRIES for b in e.bad_inputs]


@pytest.mark.parametrize('entry,kwargs,error,match', BAD_ARGS,
                         ids=[f'{e.backbone}-{i}' for i, (e, *_) in enumerate(BAD_ARGS)])
def test_bad_constructor_arguments(entry, kwargs, error, match):
    kwargs = dict(kwargs)
    arch = kwargs.pop('arch', None)
    if callable(arch):
        arch = arch(entry.cls.parse_arch(entry.archs[0]))
    elif arch is None:
        arch = entry.tiny(entry.archs[0])
    with pytest.raises(error, match=match):
        entry.build(arch, **kwargs)


BAD_INPUTS = [
    (lambda s: np.zeros((1, 3) + s, np.float32), TypeError, r'expects a float tensor.*ndarray'),
    (lambda s: None, TypeError, r'expects a float tensor.*NoneType'),
    (lambda s: torch.zeros((1, 3) + s, dtype=torch.uint8), TypeError, r'floating-point.*uint8'),
    (lambda s: torch.zeros((3, ) + s), ValueError, r'NCHW'),
    (lambda s: torch.zeros((1, 1) + s), ValueError, r'in_channels=3 but the input has 1'),
    (lambda s: torch.zeros(1, 3, 8, 8), ValueError, r'too small'),
]


@pytest.mark.parametrize('entry', ENTRIES, ids=_id)
@pytest.mark.parametrize('make,error,match', BAD_INPUTS)
def test_bad_forward_inputs(entry, make, error, match):
    model = _tiny(entry).eval()
    with torch.no_grad(), pytest.raises(error, match=match):
        model(make(entry.small_input))

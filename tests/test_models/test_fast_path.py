# Copyright (c) mmevo contributors. All rights reserved.
"""The fast-path policy: one off switch that every module with a fast route honours.

With the switch off (``plain_ops()``, ``use_fast_path(False)`` or ``MMEVO_FAST_PATH=0``) no
fused oneDNN kernel runs in inference and no custom autograd node is recorded in training, for
every backbone of the zoo; with it on, EATFormer uses both (so the checks can fail). Outputs
and gradients with the switch off equal the fast path's for every parity fixture
(tests/test_models/test_parity.py::test_plain_ops_equal_fast_path).
"""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mmevo.models.layers import fast_path_enabled, plain_ops, use_fast_path
from mmevo.models.layers.fast_path import ONEDNN_POINTWISE, fast_route
from mmevo.testing.zoo import ZOO

ENTRIES = sorted(ZOO.values(), key=lambda e: e.backbone)


class _RecordOps(TorchDispatchMode):

    def __init__(self):
        super().__init__()
        self.ops = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


def _custom_nodes(outputs) -> set:
    """Names of the custom autograd Function nodes in the graph of ``outputs``."""
    seen, found = set(), set()
    stack = [o.grad_fn for o in outputs if o.grad_fn is not None]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, torch.autograd.function.BackwardCFunction):
            found.add(type(node).__name__)
        stack.extend(fn for fn, _ in node.next_functions)
    return found


def _routes(entry):
    torch.manual_seed(0)
    model = entry.build(entry.tiny(entry.archs[0]), out_indices=-1)
    h, w = entry.small_input
    x = torch.randn(2, 3, h, w)
    with torch.no_grad(), _RecordOps() as rec:
        model.eval()(x)
    outs = model.train()(x.requires_grad_())
    return rec.ops, _custom_nodes(outs)


@pytest.mark.parametrize('entry', ENTRIES, ids=lambda e: e.backbone)
def test_switch_off_runs_plain_ops_only(entry, monkeypatch):
    for switch in (plain_ops, lambda: use_fast_path(False)):
        with switch():
            ops, nodes = _routes(entry)
        assert not any('mkldnn._convolution_pointwise' in op for op in ops), entry.backbone
        assert not nodes, (entry.backbone, nodes)
    monkeypatch.setenv('MMEVO_FAST_PATH', '0')
    assert not fast_path_enabled()
    ops, nodes = _routes(entry)
    assert not nodes and not any('_convolution_pointwise' in op for op in ops)


def test_switch_on_takes_the_fast_routes():
    """The checks above can fail: EATFormer's fast path uses both kinds of route."""
    ops, nodes = _routes(ZOO['EATFormer'])
    assert nodes  # lean training nodes (MSRA, GLI conv op, act_conv, ...)
    if ONEDNN_POINTWISE:
        assert any('mkldnn._convolution_pointwise' in op for op in ops)


def test_switch_nesting_and_environment(monkeypatch):
    monkeypatch.delenv('MMEVO_FAST_PATH', raising=False)
    assert fast_path_enabled()
    with plain_ops():
        assert not fast_path_enabled()
        with use_fast_path(True):
            assert fast_path_enabled()
        assert not fast_path_enabled()
    assert fast_path_enabled()
    for value, enabled in (('0', False), ('off', False), ('False', False), ('1', True)):
        monkeypatch.setenv('MMEVO_FAST_PATH', value)
        assert fast_path_enabled() is enabled
    monkeypatch.setenv('MMEVO_FAST_PATH', '0')
    with use_fast_path(True):  # code beats the environment
        assert fast_path_enabled()


def test_fast_route_steps_aside_under_tracing_and_autocast():
    conv = torch.nn.Conv2d(4, 4, 1).eval()
    x = torch.randn(1, 4, 5, 5)
    with torch.no_grad():
        assert fast_route(conv, x) is ONEDNN_POINTWISE
        with torch.autocast('cpu', dtype=torch.bfloat16):
            assert not fast_route(conv, x)
        traced = []
        torch.jit.trace(lambda t: traced.append(fast_route(conv, t)) or t, x, check_trace=False)
        assert traced == [False]
    conv.train()
    assert fast_route(conv, x.requires_grad_())
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not fast_route(conv, x)

# Copyright (c) mmevo contributors. All rights reserved.
"""ONNX export (``mmevo.deployment.onnx``, ``tools/deployment/pytorch2onnx.py``).

One round trip per family of ``mmevo.testing.zoo.ZOO`` (its narrowed first arch, every stage
out): export with a dynamic batch, run ONNX Runtime at batch 1 and 3, compare with PyTorch.
Then the CLI on a real classification config, and the errors of what does not export.
"""
import io
import os.path as osp
import re
import sys
import types
from contextlib import redirect_stdout

import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from tool_helpers import REPO, load_tool

from mmevo.deployment.onnx import (
    ATOL,
    BATCH_AXIS,
    RTOL,
    ExportError,
    check_onnx,
    export_onnx,
    require,
)
from mmevo.models.layers import fast_path
from mmevo.testing.zoo import ZOO, shrink_backbone_cfg

ENTRIES = sorted(ZOO.values(), key=lambda e: e.backbone)

pytestmark = pytest.mark.usefixtures('one_thread')


def _tiny(entry, **kwargs):
    """The entry's narrowed first arch, every stage out."""
    torch.manual_seed(0)
    arch = entry.tiny(entry.archs[0])
    num_stages = entry.build(arch, **kwargs).num_stages
    return entry.build(arch, out_indices=tuple(range(num_stages)), **kwargs).eval()


class _FastRouteSpy:
    """Records, for every module call inside ``torch.export``, whether a fast route would have
    been allowed on its input."""

    def __init__(self, model):
        self.calls, self.fast = 0, []
        self.handles = [m.register_forward_pre_hook(self._hook) for m in model.modules()]

    def _hook(self, module, args):
        x = args[0] if args and torch.is_tensor(args[0]) else None
        if x is None or not (torch.compiler.is_exporting() or torch.jit.is_tracing()):
            return
        self.calls += 1
        param = next(module.parameters(), None)
        if fast_path.fused_inference(x) or fast_path.lean_training(x, param):
            self.fast.append(type(module).__name__)

    def remove(self):
        for handle in self.handles:
            handle.remove()


def _graph_ops(path):
    return {(node.domain, node.op_type) for node in onnx.load(path).graph.node}


@pytest.mark.parametrize('entry', ENTRIES, ids=lambda e: e.backbone)
def test_round_trip(entry, tmp_path):
    model = _tiny(entry)
    shape = (model.in_channels, *entry.small_input)
    example = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    path = str(tmp_path / f'{entry.backbone}.onnx')
    spy = _FastRouteSpy(model)
    try:
        names = export_onnx(model, example, path)
    finally:
        spy.remove()
    assert spy.calls > 0 and not spy.fast, f'fast routes ran while exporting: {spy.fast}'
    result = check_onnx(path, model, shape, batch_sizes=(1, 3))
    proto = onnx.load(path)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == BATCH_AXIS
    assert all(o.type.tensor_type.shape.dim[0].dim_param == BATCH_AXIS
               for o in proto.graph.output)
    assert sorted(result.errors) == [1, 3]
    assert names == [f'stage{i}' for i in model.out_indices]
    assert result.passed, result.summary()
    assert result.max_abs_error <= ATOL + RTOL * max(
        s for per_batch in result.scales.values() for s in per_batch.values())
    ops = _graph_ops(path)
    assert {domain for domain, _ in ops} == {''}, f'non-standard ops: {sorted(ops)}'
    if entry.backbone == 'EATFormer':
        # MD-MSA samples with grid_sample: ONNX GridSample, no custom deformable op
        assert ('', 'GridSample') in ops, sorted(ops)


def test_sampler_auto_is_grid_sample_while_exporting(monkeypatch):
    """'auto' takes mmcv's op on CUDA tensors with mmcv's CUDA ops, never inside an export."""
    from mmevo.models.layers import deform
    monkeypatch.setattr(deform, 'mmcv_cuda_ops_available', lambda: True)
    cuda_like = types.SimpleNamespace(is_cuda=True)
    seen = []

    class Probe(torch.nn.Module):

        def forward(self, x):
            seen.append((fast_path.deform_sampler(cuda_like, 'auto'),
                         fast_path.deform_conv_impl(cuda_like, 'auto')))
            return x + 1

    assert fast_path.deform_sampler(cuda_like, 'auto') == 'mmcv'
    assert fast_path.deform_conv_impl(cuda_like, 'auto') == 'mmcv'
    x = torch.randn(2, 3)
    torch.export.export(Probe(), (x, ), strict=False)
    torch.onnx.export(Probe(), (x, ), dynamo=True, verbose=False)
    assert seen and set(seen) == {('grid_sample', 'torchvision')}
    assert fast_path.deform_sampler(cuda_like, 'grid_sample') == 'grid_sample'


def test_fast_routes_step_aside_under_tracing():
    model = _tiny(ZOO['EATFormer'])
    x = torch.randn(1, 3, 64, 64)
    spy = _FastRouteSpy(model)
    try:
        with torch.no_grad():
            traced = torch.jit.trace(model, (x, ), check_trace=False)
    finally:
        spy.remove()
    assert spy.calls > 0 and not spy.fast
    with torch.no_grad():
        for ours, ref in zip(traced(x), model(x)):
            torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def test_untraceable_op_names_the_module(tmp_path):
    """mmcv's deformable op (sampler='mmcv') is C++: torch.export cannot trace it."""
    model = ZOO['EATFormer'].build(ZOO['EATFormer'].tiny('mobile'), sampler='mmcv').eval()
    with pytest.raises(ExportError, match=r"EATFormer cannot be traced by torch\.export in "
                       r"module 'stages\.2\.0\.gli\.ops\.0' \(MDMSA\):.*custom C\+\+"):
        export_onnx(model, torch.randn(2, 3, 64, 64), str(tmp_path / 'x.onnx'))
    assert not (tmp_path / 'x.onnx').exists()


@torch.library.custom_op('mmevo_test::double', mutates_args=())
def _double(x: torch.Tensor) -> torch.Tensor:
    return x * 2


@_double.register_fake
def _double_fake(x):
    return torch.empty_like(x)


class _Double(torch.nn.Module):

    def forward(self, x):
        return _double(x)


def test_op_without_onnx_translation_names_the_module(tmp_path):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Sequential(_Double()))
    with pytest.raises(ExportError, match=r"Sequential: the ONNX exporter failed on "
                       r"mmevo_test\.double\.default in module '1\.0' \(_Double\).*"
                       r"has no ONNX translation at opset 20"):
        export_onnx(model, torch.randn(2, 3, 8, 8), str(tmp_path / 'x.onnx'))


class _BatchGroups(torch.nn.Module):
    """Per-sample kernels as one convolution of ``B * C`` groups: the group count (an ONNX
    attribute, a constant) depends on the batch size."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(4, 1, 3, 3))

    def forward(self, x):
        B, C, H, W = x.shape
        planes = x.reshape(1, B * C, H, W)
        out = F.conv2d(planes, self.weight.repeat(B, 1, 1, 1), padding=1, groups=B * C)
        return out.view(B, C, H, W)


def test_batch_dependent_attribute_names_the_module(tmp_path):
    model = torch.nn.Sequential(torch.nn.Identity(), _BatchGroups()).eval()
    path = str(tmp_path / 'x.onnx')
    with pytest.raises(ExportError, match=r"module '1' \(_BatchGroups\).*groups\) depends on "
                       r"the batch size.*--no-dynamic-batch"):
        export_onnx(model, torch.randn(2, 4, 8, 8), path)
    export_onnx(model, torch.randn(2, 4, 8, 8), path, dynamic_batch=False)
    assert check_onnx(path, model, (4, 8, 8), batch_sizes=(2, )).passed


def test_bad_arguments(tmp_path):
    model = _tiny(ZOO['GCCConvNeXt'])
    path = str(tmp_path / 'x.onnx')
    with pytest.raises(ValueError, match=r'opset must be an int in \[18, 23\].*got 13'):
        export_onnx(model, torch.randn(2, 3, 64, 64), path, opset=13)
    with pytest.raises(ValueError, match=r'opset must be an int in \[18, 23\].*got 24'):
        export_onnx(model, torch.randn(2, 3, 64, 64), path, opset=24)
    with pytest.raises(ValueError, match=r'dynamic batch needs an example batch >= 2.*got 1'):
        export_onnx(model, torch.randn(1, 3, 64, 64), path)
    with pytest.raises(ValueError, match=r'\(N, C, H, W\) tensor, got shape \(3, 64, 64\)'):
        export_onnx(model, torch.randn(3, 64, 64), path)


def test_missing_package_message(monkeypatch):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)
    with pytest.raises(ImportError, match=r'onnxruntime is not installed.*'
                       r'requirements/optional\.txt'):
        require('onnxruntime')


# --------------------------------------------------------------------------------------------
# The CLI on a real config
# --------------------------------------------------------------------------------------------

CONFIG = osp.join(REPO, 'configs', 'edgeformer', 'edgeformer-xs_8xb128_in1k-256px.py')


@pytest.fixture(scope='module')
def small_config(tmp_path_factory) -> str:
    """The EdgeFormer-XS ImageNet config with its backbone narrowed (mmevo.testing.zoo)."""
    cfg = Config.fromfile(CONFIG)
    channels = shrink_backbone_cfg(cfg.model.backbone)
    cfg.model.head.in_channels = channels[-1]
    path = str(tmp_path_factory.mktemp('onnx_cfg') / 'edgeformer-xs-narrow_in1k-256px.py')
    cfg.dump(path)
    return path


def _cli(argv):
    tool = load_tool('deployment/pytorch2onnx.py')
    out = io.StringIO()
    with redirect_stdout(out):
        report = tool.main(argv)
    return report, out.getvalue()


def test_cli_exports_the_classifier_with_a_checkpoint(small_config, tmp_path):
    from mmevo.utils.flops import build_model_from_cfg
    model = build_model_from_cfg(Config.fromfile(small_config))
    torch.manual_seed(3)
    with torch.no_grad():  # weights unlike a fresh build's, so a missed load shows
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ckpt = str(tmp_path / 'epoch_1.pth')
    torch.save({'meta': {'epoch': 1}, 'state_dict': model.state_dict()}, ckpt)
    out = str(tmp_path / 'model.onnx')

    report, text = _cli([small_config, ckpt, '--out', out])
    assert report['model'] == 'classifier (backbone + neck + head logits)'
    assert report['outputs'] == ['logits'] and report['input_shape'] == (2, 3, 256, 256)
    assert 'PASS' in text and 'batch 3' in text, text
    # the file holds the checkpoint's weights: ONNX Runtime equals the loaded model
    x = torch.randn(2, 3, 256, 256)
    session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
    (logits, ) = session.run(None, {'input': x.numpy()})
    with torch.no_grad():
        expected = model.eval()(x, mode='tensor')
    assert logits.shape == (2, 1000)
    torch.testing.assert_close(torch.from_numpy(logits), expected, atol=1e-4, rtol=1e-4)


def test_backbone_only_takes_the_backbone_weights(small_config, tmp_path):
    from mmevo.deployment.onnx import build_export_target
    from mmevo.utils.flops import build_model_from_cfg
    cfg = Config.fromfile(small_config)
    model = build_model_from_cfg(cfg)
    whole, raw = str(tmp_path / 'whole.pth'), str(tmp_path / 'backbone.pth')
    torch.save({'state_dict': model.state_dict()}, whole)
    torch.save(model.backbone.state_dict(), raw)
    for ckpt in (whole, raw):
        target = build_export_target(cfg, ckpt, backbone_only=True)
        assert target.description == 'backbone' and not target.task_model
        ours = target.model.state_dict()
        assert ours.keys() == model.backbone.state_dict().keys()
        for key, value in model.backbone.state_dict().items():
            assert torch.equal(ours[key], value), key


def test_cli_reports_what_does_not_export(small_config, tmp_path, capsys):
    # mmcv's C++ deformable sampler, chosen in the (narrowed EATFormer-Mobile) config
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'eatformer', 'eatformer-mobile_8xb128_in1k.py'))
    cfg.model.head.in_channels = shrink_backbone_cfg(cfg.model.backbone)[-1]
    path = str(tmp_path / 'eatformer-mobile-narrow.py')
    cfg.dump(path)
    with pytest.raises(SystemExit) as exc:
        _cli([path, '--backbone-only', '--out', str(tmp_path / 'x.onnx'), '--shape', '64',
              '--cfg-options', 'model.backbone.sampler=mmcv'])
    assert re.search(r"pytorch2onnx: EATFormer cannot be traced by torch\.export in module "
                     r"'stages\.2\.0\.gli\.ops\.0' \(MDMSA\)", str(exc.value.code)), exc.value.code
    with pytest.raises(SystemExit):
        _cli([path, '--batch-size', '1'])
    assert '--batch-size must be >= 2 with a dynamic batch' in capsys.readouterr().err

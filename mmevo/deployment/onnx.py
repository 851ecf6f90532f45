# Copyright (c) mmevo contributors. All rights reserved.
"""ONNX export of mmevo backbones and classifiers, checked against PyTorch with ONNX Runtime.

The model is captured with ``torch.export`` (non-strict) with a dynamic batch axis, then turned
into ONNX by torch's ``torch.export``-based exporter (which needs ``onnxscript``). mmevo's fast
routes step aside during both (``torch.compiler.is_compiling()`` /
``torch.onnx.is_in_onnx_export()``, see :mod:`mmevo.models.layers.fast_path`): the graph holds
the plain ops of each paper's formula, and EATFormer's MD-MSA samples with ``grid_sample``
(ONNX ``GridSample``).

:func:`check_onnx` runs the file with ONNX Runtime at several batch sizes and compares every
output with the PyTorch model: it passes when ``max |onnx - torch| <= atol + rtol * max |torch|``
per output (defaults :data:`ATOL` and :data:`RTOL`).

A model that cannot be exported raises :class:`ExportError`, which names the stage that failed,
the module and the reason (an op without an ONNX translation, a shape that depends on the
batch size or on data, ...).

``onnx``, ``onnxruntime`` and ``onnxscript`` are optional requirements
(``requirements/optional.txt``), imported only when used.
"""
import importlib
import logging
import os
import os.path as osp
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

#: ONNX opset of the exported graphs (the default of torch's exporter since torch 2.9).
DEFAULT_OPSET = 20
#: Opsets the ``torch.export``-based exporter of torch 2.14 emits (18 natively, newer ones
#: through onnx's version converter; 18, 20 and 23 are tested).
MIN_OPSET, MAX_OPSET = 18, 23
#: Tolerance of :func:`check_onnx`: ``max |onnx - torch| <= ATOL + RTOL * max |torch|``.
ATOL = 1e-4
RTOL = 1e-4
#: Batch sizes :func:`check_onnx` runs a dynamic-batch model at.
CHECK_BATCH_SIZES = (1, 3)
#: Name of the dynamic batch axis in the ONNX file.
BATCH_AXIS = 'batch'

ONNX_HINT = ('ONNX export needs the optional packages onnx, onnxruntime and onnxscript: '
             '`pip install -r requirements/optional.txt` (or `pip install onnx onnxruntime '
             'onnxscript`)')


class ExportError(RuntimeError):
    """A model that cannot be exported to ONNX, or an export that does not match PyTorch."""


def require(package: str):
    """Import one of the optional ONNX packages, or raise an ImportError that says how to
    install them."""
    try:
        return importlib.import_module(package)
    except ImportError as err:
        raise ImportError(f'{package} is not installed. {ONNX_HINT}') from err


def _flatten(out) -> Tuple[torch.Tensor, ...]:
    if torch.is_tensor(out):
        return (out, )
    if isinstance(out, (list, tuple)):
        return tuple(t for item in out for t in _flatten(item))
    raise ExportError(f'the model returns a {type(out).__name__}; only tensors and (nested) '
                      'tuples/lists of tensors can be exported')


class ExportWrapper(nn.Module):
    """A model as a one-input module returning a flat tuple of tensors.

    Args:
        model (nn.Module): A backbone (``model(x)``) or an OpenMMLab task model (called as
            ``model(x, mode='tensor')``: an mmpretrain classifier returns its head's logits).
        task_model (bool): Call ``model`` in ``mode='tensor'``. Defaults to False.
    """

    def __init__(self, model: nn.Module, task_model: bool = False):
        super().__init__()
        self.model = model
        self.task_model = task_model

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        out = self.model(x, mode='tensor') if self.task_model else self.model(x)
        return _flatten(out)


def output_names(model: nn.Module, num_outputs: int, task_model: bool) -> List[str]:
    """``logits`` for a classifier's single output, ``stage{i}`` for a backbone's outputs (its
    ``out_indices``), else ``output{j}``."""
    if task_model and num_outputs == 1:
        return ['logits']
    indices = getattr(model, 'out_indices', None)
    if not task_model and indices is not None and len(indices) == num_outputs:
        return [f'stage{i}' for i in indices]
    return [f'output{j}' for j in range(num_outputs)]


# --------------------------------------------------------------------------------------------
# Naming the module where an export fails
# --------------------------------------------------------------------------------------------


class _ModuleTracker:
    """The path of modules whose ``forward`` is running; on an exception it stays as it was
    where the exception was raised (post-hooks do not run)."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.stack: List[Tuple[str, nn.Module]] = []
        self.handles = []

    def __enter__(self) -> '_ModuleTracker':
        for name, module in self.model.named_modules():
            self.handles.append(module.register_forward_pre_hook(self._push(name)))
            self.handles.append(module.register_forward_hook(self._pop))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()

    def _push(self, name: str):

        def hook(module, args):
            self.stack.append((name, module))

        return hook

    def _pop(self, module, args, output):
        if self.stack and self.stack[-1][1] is module:
            self.stack.pop()

    def current(self) -> Optional[str]:
        """The innermost running module, as :func:`describe_module` names it."""
        return describe_module(*self.stack[-1]) if self.stack else None


def describe_module(name: str, module_or_type) -> str:
    """``'stages.2.0.attn' (MDMSA)``, without the :class:`ExportWrapper`'s ``model.`` prefix."""
    name = re.sub(r'^model\.?', '', name) or '<root>'
    kind = module_or_type if isinstance(module_or_type, str) else type(module_or_type).__name__
    return f"module '{name}' ({kind.split('.')[-1]})"


class _GuardLog(logging.Handler):
    """Shape guards torch adds while exporting, with the module that added them.

    Only guards on symbolic sizes are logged, and the only symbolic size is the batch axis: a
    guard such as ``Eq(s0, 2)`` (or one only its value satisfies) is what specializes it.
    """

    LOGGER = 'torch.fx.experimental.symbolic_shapes'

    def __init__(self, tracker: _ModuleTracker):
        super().__init__(logging.INFO)
        self.tracker = tracker
        self.guards: List[Tuple[str, Optional[str]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = re.match(r'eval (.+?) \[guard added\](?: \(([^)]*)\))?', record.getMessage())
        if match:
            where = f' at {match.group(2)}' if match.group(2) else ''
            self.guards.append((match.group(1) + where, self.tracker.current()))

    @contextmanager
    def attached(self) -> Iterator['_GuardLog']:
        # only this handler while exporting: torch's own would print every guard
        logger = logging.getLogger(self.LOGGER)
        saved = logger.level, logger.propagate, logger.handlers
        logger.setLevel(logging.INFO)
        logger.propagate, logger.handlers = False, [self]
        try:
            yield self
        finally:
            logger.setLevel(saved[0])
            logger.propagate, logger.handlers = saved[1:]


def _last_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0].rstrip('.') if lines else ''}"


def _root_cause(err: BaseException) -> BaseException:
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def _capture_error(err: Exception, what: str, tracker: _ModuleTracker,
                   guards: _GuardLog) -> ExportError:
    """An :class:`ExportError` for a failure of ``torch.export``."""
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    if 'Constraints violated' in str(err):
        found = '; '.join(f'{guard} in {module or "the top-level forward"}'
                          for guard, module in guards.guards) or 'none logged'
        return ExportError(
            f'{what} cannot be exported with a dynamic batch axis: the code fixes the batch '
            f'size to the example\'s (torch.export: "{_last_line(err)}"). Shape guards on the '
            f'batch: {found}. That module computes something from the batch size that ONNX '
            'cannot keep symbolic; export with a fixed batch (--no-dynamic-batch) or write '
            'that step without the batch size.')
    module = tracker.current() or 'the top-level forward'
    if isinstance(err, GuardOnDataDependentSymNode):
        return ExportError(f'{what} cannot be exported: {module} has a shape or a branch that '
                           f'depends on tensor values ({_last_line(err)})')
    return ExportError(f'{what} cannot be traced by torch.export in {module}: '
                       f'{_last_line(_root_cause(err))}. ONNX export needs plain PyTorch ops '
                       '(custom C++/CUDA ops such as mmcv\'s have no ONNX translation)')


def _conversion_error(err: Exception, what: str, program, opset: int) -> ExportError:
    """An :class:`ExportError` for a failure of the ONNX translation of ``program``."""
    root = _root_cause(err)
    where, op = 'the graph', None
    for e in _causes(err):
        match = re.search(r'translating node %(\w+)', str(e))
        if match:
            node = next((n for n in program.graph.nodes if n.name == match.group(1)), None)
            if node is not None:
                op = str(node.target)
                stack = node.meta.get('nn_module_stack') or {}
                if stack:
                    where = describe_module(*list(stack.values())[-1])
            break
    hint = ''
    if 'Unsupported attribute type' in str(root) and 'SymbolicTensor' in str(root):
        hint = (' An attribute of that op (e.g. a convolution\'s groups) depends on the batch '
                'size, and ONNX attributes are constants: export with a fixed batch '
                '(--no-dynamic-batch).')
    elif op is not None and 'No ONNX function found' in str(root):
        hint = f' {op} has no ONNX translation at opset {opset}.'
    return ExportError(f'{what}: the ONNX exporter failed on '
                       f'{op or "an op"} in {where} ({_last_line(root)}).{hint}')


def _causes(err: BaseException) -> Iterator[BaseException]:
    while err is not None:
        yield err
        err = err.__cause__


# --------------------------------------------------------------------------------------------
# Export and check
# --------------------------------------------------------------------------------------------


def export_onnx(model: nn.Module,
                example: torch.Tensor,
                out_file: str,
                opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = True,
                task_model: bool = False,
                optimize: bool = True) -> List[str]:
    """Export ``model`` to the ONNX file ``out_file``.

    Args:
        model (nn.Module): A backbone, or a task model with ``task_model=True``; exported in
            eval mode.
        example (Tensor): An example input ``(N, C, H, W)``; with a dynamic batch, ``N >= 2``
            (torch.export specializes a batch of 1).
        out_file (str): The ``.onnx`` file to write (folders are created).
        opset (int): ONNX opset in [:data:`MIN_OPSET`, :data:`MAX_OPSET`]. Defaults to
            :data:`DEFAULT_OPSET`.
        dynamic_batch (bool): A symbolic batch axis (named ``'batch'``). Defaults to True.
        task_model (bool): Call ``model(x, mode='tensor')`` (an mmpretrain classifier: its
            logits). Defaults to False.
        optimize (bool): Run onnxscript's graph optimizer (constant folding, dead code).
            Defaults to True.

    Returns:
        list[str]: The names of the outputs (``stage{i}`` per backbone output, ``logits``).

    Raises:
        ExportError: The model cannot be exported; the message names the module and why.
    """
    require('onnxscript')
    onnx = require('onnx')
    newest = min(MAX_OPSET, onnx.defs.onnx_opset_version())
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f'opset must be an int in [{MIN_OPSET}, {newest}] (what torch\'s '
                         f'exporter and onnx {onnx.__version__} support), got {opset!r}')
    if example.dim() != 4:
        raise ValueError(f'example must be an (N, C, H, W) tensor, got shape '
                         f'{tuple(example.shape)}')
    if dynamic_batch and example.shape[0] < 2:
        raise ValueError(f'a dynamic batch needs an example batch >= 2 (torch.export '
                         f'specializes a batch of 1), got {example.shape[0]}')
    model.eval()
    wrapper = ExportWrapper(model, task_model).eval()
    what = type(model).__name__
    if hasattr(model, 'backbone'):
        what += f' ({type(model.backbone).__name__} backbone)'
    with torch.no_grad():
        names = output_names(model, len(wrapper(example)), task_model)
    dynamic_shapes = ({0: torch.export.Dim(BATCH_AXIS, min=1)}, ) if dynamic_batch else None

    tracker = _ModuleTracker(wrapper)
    guards = _GuardLog(tracker)
    try:
        with tracker, guards.attached():
            program = torch.export.export(
                wrapper, (example, ), dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as err:
        raise _capture_error(err, what, tracker, guards) from err

    try:
        onnx_program = torch.onnx.export(
            program, (example, ),
            dynamo=True,
            opset_version=opset,
            input_names=['input'],
            output_names=names,
            optimize=optimize,
            verbose=False)
    except Exception as err:
        raise _conversion_error(err, what, program, opset) from err

    out_dir = osp.dirname(osp.abspath(out_file))
    os.makedirs(out_dir, exist_ok=True)
    proto = onnx_program.model_proto
    if dynamic_batch:
        _name_batch_axis(proto, what)
    # weights inside the file unless it would pass protobuf's 2 GB limit
    large = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.5 * 2**30
    onnx.save_model(proto, out_file, save_as_external_data=large,
                    location=osp.basename(out_file) + '.data' if large else None)
    try:
        onnx.checker.check_model(out_file)
    except Exception as err:
        raise ExportError(f'{what}: the exported file is not valid ONNX at opset {opset} '
                          f'({_last_line(err)})') from err
    return names


def _name_batch_axis(proto, what: str) -> None:
    """Rename the input's symbolic batch size (``s0``...) to ``'batch'`` everywhere it appears
    whole; raise if the exporter fixed it after all."""
    dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    if not dim.dim_param:
        raise ExportError(f'{what}: the ONNX input has a fixed batch of {dim.dim_value} although '
                          'a dynamic batch was asked for')
    symbol = dim.dim_param
    graph = proto.graph
    for value in (*graph.input, *graph.output, *graph.value_info):
        for d in value.type.tensor_type.shape.dim:
            if d.dim_param == symbol:
                d.dim_param = BATCH_AXIS


@dataclass
class OnnxCheck:
    """ONNX Runtime's outputs against PyTorch's.

    Attributes:
        errors (dict): ``{batch_size: {output: max |onnx - torch|}}``.
        scales (dict): ``{batch_size: {output: max |torch|}}``.
        atol, rtol (float): The tolerance: ``error <= atol + rtol * scale`` per output.
    """
    errors: Dict[int, Dict[str, float]]
    scales: Dict[int, Dict[str, float]]
    atol: float = ATOL
    rtol: float = RTOL
    failures: List[str] = field(default_factory=list)

    @property
    def max_abs_error(self) -> float:
        return max(e for per_batch in self.errors.values() for e in per_batch.values())

    @property
    def passed(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        lines = []
        for batch, per_output in self.errors.items():
            cells = ', '.join(f'{name} {err:.2e} (max |torch| {self.scales[batch][name]:.3g})'
                              for name, err in per_output.items())
            lines.append(f'  batch {batch}: max |onnx - torch|: {cells}')
        verdict = 'PASS' if self.passed else 'FAIL: ' + '; '.join(self.failures)
        lines.append(f'  tolerance: error <= {self.atol:g} + {self.rtol:g} * max |torch| per '
                     f'output -> {verdict}')
        return '\n'.join(lines)


def check_onnx(onnx_file: str,
               model: nn.Module,
               input_shape: Sequence[int],
               batch_sizes: Sequence[int] = CHECK_BATCH_SIZES,
               task_model: bool = False,
               atol: float = ATOL,
               rtol: float = RTOL,
               seed: int = 0) -> OnnxCheck:
    """Run ``onnx_file`` with ONNX Runtime (CPU) and compare its outputs with ``model``'s.

    Args:
        onnx_file (str): The exported file.
        model (nn.Module): The PyTorch model it was exported from (run in eval mode, without
            gradients, as it is: its fast routes included).
        input_shape (Sequence[int]): ``(C, H, W)`` of the random inputs.
        batch_sizes (Sequence[int]): Batches to run. Defaults to :data:`CHECK_BATCH_SIZES`.
        task_model (bool): ``model`` is called as ``model(x, mode='tensor')``.
        atol, rtol (float): Tolerance, see :class:`OnnxCheck`.
        seed (int): Seed of the random inputs.

    Returns:
        OnnxCheck: Errors per batch and output; ``passed`` tells the verdict.
    """
    ort = require('onnxruntime')
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(onnx_file, options, providers=['CPUExecutionProvider'])
    except Exception as err:
        raise ExportError(f'ONNX Runtime cannot load {onnx_file}: {_last_line(err)}') from err
    input_name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    wrapper = ExportWrapper(model.eval(), task_model)
    gen = torch.Generator().manual_seed(seed)
    result = OnnxCheck({}, {}, atol, rtol)
    for batch in batch_sizes:
        x = torch.randn(batch, *input_shape, generator=gen)
        with torch.no_grad():
            expected = wrapper(x)
        try:
            got = session.run(None, {input_name: x.numpy()})
        except Exception as err:
            raise ExportError(f'ONNX Runtime failed on {onnx_file} at batch {batch}: '
                              f'{_last_line(err)}') from err
        if len(got) != len(expected):
            raise ExportError(f'{onnx_file} has {len(got)} outputs, the model {len(expected)}')
        result.errors[batch], result.scales[batch] = {}, {}
        for name, ours, ref in zip(names, got, expected):
            ours = torch.from_numpy(ours)
            if tuple(ours.shape) != tuple(ref.shape):
                result.failures.append(f'{name} at batch {batch}: shape {tuple(ours.shape)} vs '
                                       f'PyTorch {tuple(ref.shape)}')
                continue
            err = float((ours - ref).abs().max())
            scale = float(ref.abs().max())
            result.errors[batch][name], result.scales[batch][name] = err, scale
            if not err <= atol + rtol * scale:  # also catches NaN
                result.failures.append(f'{name} at batch {batch}: {err:.3e} > {atol:g} + '
                                       f'{rtol:g} * {scale:.3g}')
    return result


# --------------------------------------------------------------------------------------------
# From configs
# --------------------------------------------------------------------------------------------


@dataclass
class ExportTarget:
    """What :func:`build_export_target` built from a config.

    Attributes:
        model (nn.Module): The backbone or the classifier, in eval mode.
        task_model (bool): ``model`` is a classifier called in ``mode='tensor'``.
        description (str): ``'backbone'`` or ``'classifier (backbone + neck + head logits)'``.
        in_channels (int): Input channels.
    """
    model: nn.Module
    task_model: bool
    description: str
    in_channels: int = 3


def build_export_target(cfg,
                        checkpoint: Optional[str] = None,
                        backbone_only: bool = False) -> ExportTarget:
    """The model a config exports: the whole classifier for mmpretrain configs, the backbone
    for detection/segmentation configs or with ``backbone_only``.

    Args:
        cfg (mmengine.Config): The config.
        checkpoint (str, optional): A checkpoint of the config's model (mmevo/mmpretrain
            training, or a converted one), read without executing code and loaded strictly;
            the backbone takes the keys under ``backbone.`` when there are any.
        backbone_only (bool): Export ``model.backbone`` only.
    """
    from mmevo.utils.checkpoint import load_weights, read_checkpoint, weights_of
    from mmevo.utils.flops import build_model_from_cfg

    scope = cfg.get('default_scope')
    backbone_only = backbone_only or scope != 'mmpretrain'
    model = build_model_from_cfg(cfg, backbone_only=False)
    if backbone_only:
        if not hasattr(model, 'backbone'):
            raise ValueError(f'{type(model).__name__} has no backbone to export')
        target = ExportTarget(model.backbone, False, 'backbone')
    else:
        target = ExportTarget(model, True, 'classifier (backbone + neck + head logits)')
    target.in_channels = getattr(model.backbone if hasattr(model, 'backbone') else model,
                                 'in_channels', 3)
    if checkpoint is not None:
        ckpt = read_checkpoint(checkpoint, map_location='cpu')
        keys = [k[7:] if k.startswith('module.') else k for k in weights_of(ckpt)]
        prefix = 'backbone.' if backbone_only and any(
            k.startswith('backbone.') for k in keys) else None
        load_weights(target.model, ckpt, prefix=prefix, source=checkpoint)
    target.model.eval()
    return target


def export_config(cfg,
                  out_file: str,
                  checkpoint: Optional[str] = None,
                  input_size: Optional[Union[int, Sequence[int]]] = None,
                  opset: int = DEFAULT_OPSET,
                  dynamic_batch: bool = True,
                  check: bool = True,
                  backbone_only: bool = False,
                  batch_size: int = 2,
                  atol: float = ATOL,
                  rtol: float = RTOL) -> dict:
    """Build a config's model, export it to ``out_file`` and (``check``) compare ONNX Runtime
    with PyTorch; what ``tools/deployment/pytorch2onnx.py`` does.

    Args:
        cfg (mmengine.Config): The config.
        out_file (str): The ``.onnx`` file to write.
        checkpoint (str, optional): Weights to load (see :func:`build_export_target`).
        input_size (int | Sequence[int], optional): ``(H, W)`` or a square size; defaults to
            :func:`mmevo.utils.flops.config_input_size`.
        opset, dynamic_batch: See :func:`export_onnx`.
        check (bool): Run :func:`check_onnx` (batch 1 and 3, or the fixed batch).
        backbone_only (bool): Export the backbone of a classification config.
        batch_size (int): Batch of the example input (the fixed batch without
            ``dynamic_batch``).
        atol, rtol (float): Tolerance of the check.

    Returns:
        dict: ``onnx_file``, ``model`` (description), ``outputs``, ``input_shape``, ``opset``,
        ``dynamic_batch`` and, with ``check``, ``check`` (an :class:`OnnxCheck`: its
        ``passed`` is the verdict).

    Raises:
        ExportError: The model does not export (the message names the module and why).
    """
    target = build_export_target(cfg, checkpoint, backbone_only)
    if input_size is None:
        from mmevo.utils.flops import config_input_size
        input_size = config_input_size(cfg)
    elif isinstance(input_size, int):
        input_size = (input_size, input_size)
    elif len(input_size) == 1:
        input_size = (input_size[0], input_size[0])
    height, width = input_size
    example = torch.randn(batch_size, target.in_channels, height, width,
                          generator=torch.Generator().manual_seed(0))
    names = export_onnx(target.model, example, out_file, opset=opset,
                        dynamic_batch=dynamic_batch, task_model=target.task_model)
    report = dict(onnx_file=out_file, model=target.description, outputs=names,
                  input_shape=tuple(example.shape), opset=opset, dynamic_batch=dynamic_batch)
    if check:
        report['check'] = check_onnx(
            out_file, target.model, example.shape[1:],
            batch_sizes=CHECK_BATCH_SIZES if dynamic_batch else (batch_size, ),
            task_model=target.task_model, atol=atol, rtol=rtol)
    return report

# Copyright (c) mmevo contributors. All rights reserved.
"""The one place that decides where mmevo's fast routes may run.

mmevo's modules compute the paper's formula with plain PyTorch ops. Some of them also have a
*fast route* that gives the same values with fewer passes over memory:

* **fused inference** (:func:`fused_inference`): without autograd, on a float32 CPU tensor,
  BatchNorms, layer scales and activations are folded into oneDNN convolutions on the fly
  (:mod:`mmevo.models.layers.inference_conv`);
* **lean training** (:func:`lean_training`): with autograd, custom autograd nodes keep only their
  input and recompute the rest in backward (:mod:`mmevo.models.layers.lean_ops`,
  :mod:`mmevo.models.layers.depthwise`, EATFormer's sub-layer nodes).

Both step aside under ``torch.compile`` (Inductor fuses by itself), ``torch.jit.trace``,
``torch.export`` and ONNX export (FLOP counters and exporters must see plain ops) and autocast,
and both are off when the global switch is off:

* ``MMEVO_FAST_PATH=0`` in the environment (read at every call, so it also reaches worker
  processes), or
* ``with mmevo.models.layers.plain_ops(): ...`` (or ``use_fast_path(False)``) in code;

then every module runs its plain ops. The module predicates below say whether a given layer is
of the shape a fast kernel handles (a plain zero-padded convolution, a depth-wise one, an eval
BatchNorm that can be folded, ...); a module combines them with one of the two mode checks in
a single ``if``.
"""
import os
import threading
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
import torch.nn as nn
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm

#: Environment variable of the global switch: ``0``, ``false``, ``off`` or ``no`` turn the fast
#: routes off.
ENV_SWITCH = 'MMEVO_FAST_PATH'
_OFF_VALUES = ('0', 'false', 'off', 'no')
_local = threading.local()


def _onednn_pointwise_available() -> bool:
    try:
        return (torch.backends.mkldnn.is_available()
                and hasattr(torch.ops.mkldnn, '_convolution_pointwise'))
    except (AttributeError, RuntimeError):  # builds without the mkldnn op library
        return False


#: Whether oneDNN's fused convolution (``torch.ops.mkldnn._convolution_pointwise``) exists.
ONEDNN_POINTWISE = _onednn_pointwise_available()


def fast_path_enabled() -> bool:
    """The global switch: the innermost :func:`use_fast_path` context, else ``$MMEVO_FAST_PATH``."""
    override = getattr(_local, 'override', None)
    if override is not None:
        return override
    return os.environ.get(ENV_SWITCH, '1').strip().lower() not in _OFF_VALUES


@contextmanager
def use_fast_path(enabled: bool = True) -> Iterator[None]:
    """Turn mmevo's fast routes on or off inside the ``with`` block (this thread).

    Example:
        >>> from mmevo.models.layers import use_fast_path
        >>> with use_fast_path(False):
        ...     outs = model(x)  # plain PyTorch ops only
    """
    previous = getattr(_local, 'override', None)
    _local.override = bool(enabled)
    try:
        yield
    finally:
        _local.override = previous


def plain_ops():
    """``use_fast_path(False)``: every mmevo module runs its plain ops."""
    return use_fast_path(False)


def _plain_mode() -> bool:
    """Modes in which only plain ops may run: compile, tracing, export, switch off."""
    # is_compiling first: Dynamo then never traces the thread-local switch
    return (torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting()
            or torch.onnx.is_in_onnx_export() or not fast_path_enabled())


def exporting() -> bool:
    """Inside ``torch.export`` or an ONNX export (custom C++ ops cannot be traced there)."""
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


def fused_inference(x: torch.Tensor) -> bool:
    """May inference on ``x`` run fused oneDNN kernels: no autograd, float32 CPU, no autocast,
    oneDNN's fused convolution available, and no plain mode (see the module docstring)."""
    return (ONEDNN_POINTWISE and not torch.is_grad_enabled() and x.device.type == 'cpu'
            and x.dtype == torch.float32 and not torch.is_autocast_enabled('cpu')
            and not _plain_mode())


def lean_training(x: torch.Tensor, *params: Optional[torch.Tensor]) -> bool:
    """May a memory-lean autograd node replace the plain ops on ``x``: a graph is recorded (for
    ``x`` or one of ``params``), no autocast, no plain mode."""
    return (torch.is_grad_enabled()
            and (x.requires_grad or any(p is not None and p.requires_grad for p in params))
            and not torch.is_autocast_enabled(x.device.type) and not _plain_mode())


def cpu_lean_training(x: torch.Tensor, *params: Optional[torch.Tensor]) -> bool:
    """:func:`lean_training` on a float32/float64 CPU tensor (the nodes whose backward is
    written for oneDNN's CPU kernels)."""
    return (x.device.type == 'cpu' and x.dtype in (torch.float32, torch.float64)
            and lean_training(x, *params))


def fast_route(module: nn.Module, x: torch.Tensor) -> bool:
    """May ``module`` take its fast route on input ``x``: fused inference (``module`` in eval
    mode) or lean training (a graph is recorded for ``x`` or ``module``'s parameters).

    Modules with a fast route call it once at the top of ``forward``::

        def forward(self, x):
            if fast_route(self, x):
                return self.forward_fast(x)
            ...  # the paper's formula in plain ops
    """
    if fused_inference(x):
        return not module.training
    return lean_training(x, next(module.parameters(), None))


#: Largest ``Nq * Nk`` that :func:`~.attention.dot_product_attention` computes with explicit
#: matrix products on CPU.
SMALL_ATTENTION = 64 * 64


def short_cpu_attention(q: torch.Tensor, k: torch.Tensor) -> bool:
    """May attention of ``q`` over ``k`` run as two matmuls and a softmax instead of SDPA: CPU,
    at most :data:`SMALL_ATTENTION` scores per head, no plain mode."""
    return (q.device.type == 'cpu' and q.shape[-2] * k.shape[-2] <= SMALL_ATTENTION
            and not _plain_mode())


# Module predicates: is a layer of the shape a fast kernel handles?


def plain_conv(conv: nn.Module) -> bool:
    """An ``nn.Conv2d`` (not a subclass) with numeric zero padding: its weights can be folded
    and its computation handed to ``F.conv2d`` / oneDNN directly."""
    return (type(conv) is nn.Conv2d and conv.padding_mode == 'zeros'
            and not isinstance(conv.padding, str))


def depthwise_conv(conv: nn.Module) -> bool:
    """A plain stride-1 depth-wise convolution (``groups == in == out``)."""
    return (plain_conv(conv) and conv.groups == conv.in_channels == conv.out_channels
            and conv.stride == (1, 1))


def pointwise_conv(conv: nn.Module, bias: Optional[bool] = None) -> bool:
    """A plain dense 1x1 convolution, stride 1, no padding (``bias``: required / forbidden)."""
    return (plain_conv(conv) and conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and conv.padding == (0, 0) and conv.groups == 1
            and (bias is None or (conv.bias is not None) == bias))


def foldable_norm(norm: Optional[nn.Module]) -> bool:
    """No norm, or an eval-mode BatchNorm with running statistics (a per-channel affine map)."""
    return norm is None or isinstance(norm, nn.Identity) or (
        isinstance(norm, _BatchNorm) and not norm.training and norm.track_running_stats
        and norm.running_var is not None)


def batch_stats_norm(bn: Optional[nn.Module]) -> bool:
    """A training-mode BatchNorm that normalises with this process's batch statistics (a
    SyncBatchNorm only when no process group of several ranks synchronises it)."""
    if not isinstance(bn, (nn.BatchNorm2d, nn.SyncBatchNorm)) or not bn.training \
            or not bn.track_running_stats or bn.running_mean is None:
        return False
    if isinstance(bn, nn.SyncBatchNorm):
        import torch.distributed as dist
        return not (dist.is_available() and dist.is_initialized()
                    and dist.get_world_size() > 1)
    return True


def exact_gelu(act: nn.Module) -> bool:
    """``nn.GELU`` with the exact (erf) formula, which oneDNN's post-op computes."""
    return isinstance(act, nn.GELU) and act.approximate == 'none'


# Deformable sampling back-ends


def deform_sampler(x: torch.Tensor, sampler: str = 'auto') -> str:
    """The MD-MSA sampler to run on ``x``: ``'grid_sample'`` or ``'mmcv'``.

    ``'auto'`` takes mmcv's modulated deformable op on CUDA tensors when mmcv was built with CUDA
    ops (the op the package is meant to run on GPUs), and ``F.grid_sample`` everywhere else
    (mmcv's CPU kernel is ~100x slower) and while exporting (``torch.export`` / ONNX: mmcv's
    C++ op cannot be traced, ``grid_sample`` is ONNX's ``GridSample``). Both are exact.
    """
    from .deform import SAMPLERS, mmcv_cuda_ops_available
    if sampler not in SAMPLERS:
        raise ValueError(f'sampler must be one of {SAMPLERS}, got {sampler!r}')
    if sampler != 'auto':
        return sampler
    if exporting():
        return 'grid_sample'
    return 'mmcv' if x.is_cuda and mmcv_cuda_ops_available() else 'grid_sample'


def deform_conv_impl(x: torch.Tensor, impl: str = 'auto') -> str:
    """The deformable-convolution implementation to run on ``x``: ``'mmcv'`` or
    ``'torchvision'`` (``'auto'``: mmcv on CUDA tensors with mmcv's CUDA ops, else torchvision,
    which is much faster than mmcv's CPU kernel and the one ``torch.export`` / ONNX can trace:
    ONNX ``DeformConv``)."""
    from .deform import DEFORM_CONV_IMPLS, mmcv_cuda_ops_available
    if impl not in DEFORM_CONV_IMPLS:
        raise ValueError(f'impl must be one of {DEFORM_CONV_IMPLS}, got {impl!r}')
    if impl != 'auto':
        return impl
    if exporting():
        return 'torchvision'
    return 'mmcv' if x.is_cuda and mmcv_cuda_ops_available() else 'torchvision'

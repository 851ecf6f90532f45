# Copyright (c) mmevo contributors. All rights reserved.
"""Deformable sampling and convolution with mmcv's ops and pure-PyTorch fallbacks.

``mmcv.ops`` is imported lazily: classification models that do not use the mmcv path work with
``mmcv-lite`` (or no compiled ops), and a model that needs the ops fails with an error that says
how to get them.
"""
import functools
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .fast_path import deform_conv_impl, deform_sampler

SAMPLERS = ('auto', 'grid_sample', 'mmcv')
DEFORM_CONV_IMPLS = ('auto', 'mmcv', 'torchvision')

MMCV_OPS_HINT = (
    'mmcv with compiled ops is required for {what}. Install the full mmcv (not mmcv-lite), e.g. '
    '`bash tools/install.sh`, `mim install "mmcv>=2.0.0,<2.2.0"`, or build it from source with '
    '`MMCV_WITH_OPS=1 pip install --no-build-isolation mmcv==2.1.0`')


@functools.lru_cache(None)
def mmcv_ops_available() -> bool:
    """Whether ``mmcv.ops`` (mmcv's compiled ops) imports."""
    try:
        import mmcv.ops  # noqa: F401
    except Exception:  # ModuleNotFoundError: mmcv._ext, or any import failure of the ops
        return False
    return True


@functools.lru_cache(None)
def mmcv_cuda_ops_available() -> bool:
    """Whether mmcv's compiled ops include their CUDA kernels (and a GPU is visible)."""
    if not (torch.cuda.is_available() and mmcv_ops_available()):
        return False
    from mmcv.ops import get_compiling_cuda_version
    return get_compiling_cuda_version() not in ('', 'not available')


def _mmcv_ops(what: str):
    try:
        import mmcv.ops as ops
    except Exception as err:
        raise ImportError(MMCV_OPS_HINT.format(what=what) + f' ({err})') from err
    return ops


def groups_to_batch(x: torch.Tensor, groups: int) -> torch.Tensor:
    """``(B, groups * c, H, W)`` -> ``(B * groups, c, H, W)``, channels split group-major.

    A channels-last ``x`` gives a channels-last result in one copy (``reshape`` would give a
    contiguous one); a contiguous ``x`` gives a view."""
    if groups == 1:
        return x
    B, C, H, W = x.shape
    x = x.permute(0, 2, 3, 1).reshape(B, H, W, groups, C // groups).permute(0, 3, 1, 2, 4)
    return x.reshape(B * groups, H, W, C // groups).permute(0, 3, 1, 2)


def modulated_deform_sample(x: torch.Tensor,
                            grid: torch.Tensor,
                            mask: torch.Tensor,
                            groups: int,
                            sampler: str = 'grid_sample') -> torch.Tensor:
    """Sample ``x`` bilinearly at ``grid`` and modulate each group by ``mask``.

    This is MD-MSA's sampling step: ``grid_sample(align_corners=True, padding_mode='zeros')`` per
    channel group, times the group's modulation map.

    Args:
        x (Tensor): ``(B, C, H, W)`` values; channels split group-major into ``groups`` groups.
        grid (Tensor): ``(B * groups, H, W, 2)`` sample points as ``(x, y)`` in ``[-1, 1]``
            (align_corners=True units).
        mask (Tensor): ``(B * groups, 1, H, W)`` modulation.
        groups (int): Number of deformable groups.
        sampler (str): ``'grid_sample'`` (pure PyTorch, fast on CPU), ``'mmcv'``
            (``mmcv.ops.modulated_deform_conv2d`` with an identity 1x1 depth-wise kernel, the op
            deployment back-ends know) or ``'auto'`` (:func:`~.fast_path.deform_sampler`: mmcv
            on CUDA tensors when mmcv has CUDA ops, else grid_sample). All give the same
            result.

    Returns:
        Tensor: ``(B, C, H, W)``.
    """
    B, C, H, W = x.shape
    sampler = deform_sampler(x, sampler)
    if sampler == 'grid_sample':
        # a contiguous group split, not groups_to_batch: grid_sample writes contiguous output
        # anyway, and its forward + backward is faster on contiguous than on channels-last input
        out = F.grid_sample(
            x.reshape(B * groups, C // groups, H, W),
            grid,
            mode='bilinear',
            padding_mode='zeros',
            align_corners=True)
        return (out * mask).view(B, C, H, W)
    ops = _mmcv_ops("MD-MSA's sampler='mmcv'")
    # align_corners=True: normalised g maps to pixel (g + 1) / 2 * (size - 1); the DCN offset is
    # that point minus the output pixel itself, laid out per group as (dy, dx).
    ys = torch.arange(H, dtype=grid.dtype, device=grid.device).view(1, H, 1)
    xs = torch.arange(W, dtype=grid.dtype, device=grid.device).view(1, 1, W)
    dy = (grid[..., 1] + 1) * ((H - 1) / 2) - ys
    dx = (grid[..., 0] + 1) * ((W - 1) / 2) - xs
    offset = torch.stack((dy, dx), dim=1).view(B, groups * 2, H, W)
    weight = x.new_ones(C, 1, 1, 1)
    # mmcv's kernels index raw memory: every tensor must be contiguous
    return ops.modulated_deform_conv2d(x.contiguous(), offset.to(x.dtype).contiguous(),
                                       mask.reshape(B, groups, H, W).to(x.dtype).contiguous(),
                                       weight, None, 1, 0, 1, C, groups)


def deform_conv2d(x: torch.Tensor,
                  offset: torch.Tensor,
                  mask: Optional[torch.Tensor],
                  weight: torch.Tensor,
                  padding: int,
                  deform_groups: int,
                  impl: str = 'auto') -> torch.Tensor:
    """(Modulated) deformable convolution, stride 1, no bias, on mmcv or torchvision.

    ``mask=None`` is DCNv1 (what the official EATFormer 'dcn' op uses); it runs on mmcv's
    modulated op with a mask of ones. Offsets use the common layout
    ``(B, deform_groups * 2 * kh * kw, H, W)`` with ``(dy, dx)`` pairs.
    """
    impl = deform_conv_impl(x, impl)
    if impl == 'torchvision':
        from torchvision.ops import deform_conv2d as tv_deform_conv2d
        return tv_deform_conv2d(
            x, offset, weight, None, stride=1, padding=padding, mask=mask)
    ops = _mmcv_ops("the 'dcn' op with impl='mmcv'")
    if mask is None:
        kh, kw = weight.shape[-2:]
        mask = x.new_ones(x.shape[0], deform_groups * kh * kw, *offset.shape[-2:])
    return ops.modulated_deform_conv2d(x.contiguous(), offset.contiguous(), mask.contiguous(),
                                       weight, None, 1, padding, 1, 1, deform_groups)


class DeformConv2d(nn.Module):
    """A deformable convolution (stride 1, no bias) whose offsets come from the caller.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        kernel_size (int): Square kernel size; padding is ``kernel_size // 2``.
        deform_groups (int): Offset groups.
        impl (str): ``'mmcv'`` (``mmcv.ops.modulated_deform_conv2d``), ``'torchvision'``
            (``torchvision.ops.deform_conv2d``) or ``'auto'`` (mmcv on CUDA when available,
            torchvision on CPU, where it is much faster than mmcv's CPU kernel).
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int,
                 deform_groups: int = 1,
                 impl: str = 'auto'):
        super().__init__()
        if impl not in DEFORM_CONV_IMPLS:
            raise ValueError(f'impl must be one of {DEFORM_CONV_IMPLS}, got {impl!r}')
        self.padding = kernel_size // 2
        self.deform_groups = deform_groups
        self.impl = impl
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self,
                x: torch.Tensor,
                offset: torch.Tensor,
                mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        return deform_conv2d(x, offset, mask, self.weight, self.padding, self.deform_groups,
                             self.impl)

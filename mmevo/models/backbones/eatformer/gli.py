# Copyright (c) mmevo contributors. All rights reserved.
from typing import List, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath

from ...layers.deform import DeformConv2d
from ...layers.fast_path import fast_route, fused_inference
from ...layers.folding import fold_bn_after_conv, is_bn, scale_conv_output
from ...layers.inference_conv import conv_bn_act
from ...layers.lean_ops import act_conv
from ...layers.norm import build_norm
from ...layers.residual import add_residual
from ...layers.window import WindowSize
from .attention import MDMSA, WindowMSA
from .interleave import interleave_add, interleave_channels
from .lean_nodes import dwconv_bn_silu_conv

#: Accepted op names of GLI, with the short aliases of the official code.
GLI_OPS = {'conv': 'conv', 'c': 'conv', 'msa': 'msa', 'm': 'msa', 'mdmsa': 'mdmsa',
           'dm': 'mdmsa', 'dcn': 'dcn', 'dc': 'dcn'}


class ConvOp(nn.Module):
    """GLI's local op: ``pwconv(SiLU(norm(dwconv_kxk(x))))``.

    Args:
        dim (int): Channels.
        kernel_size (int): Depth-wise kernel. Defaults to 5.
        norm_cfg (dict): Norm. Defaults to BN with eps 1e-6.
    """

    def __init__(self, dim: int, kernel_size: int = 5,
                 norm_cfg: dict = dict(type='BN', eps=1e-6)):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = build_norm(norm_cfg, dim)
        self.pwconv = nn.Conv2d(dim, dim, 1)

    def forward(self,
                x: torch.Tensor,
                scale: Optional[torch.Tensor] = None,
                residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``residual + scale * op(x)`` (``scale``: GLI's op weight)."""
        if fast_route(self, x):
            return self.forward_fast(x, scale, residual)
        y = self.pwconv(F.silu(self.norm(self.dwconv(x))))
        if scale is not None:
            y = y * scale
        return y if residual is None else residual + y

    def forward_fast(self,
                     x: torch.Tensor,
                     scale: Optional[torch.Tensor] = None,
                     residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """:meth:`forward` with ``scale`` applied to ``pwconv``'s weights: fused oneDNN kernels
        in inference (the residual added in place), one lean node in training."""
        if fused_inference(x):
            return conv_bn_act(conv_bn_act(x, self.dwconv, self.norm, 'silu'), self.pwconv,
                               scale=scale, residual=residual)
        y = dwconv_bn_silu_conv(x, self.dwconv, self.norm, self.pwconv, scale)
        return y if residual is None else residual + y

    @torch.no_grad()
    def fuse(self, scale=1.) -> 'ConvOp':
        """Fold the BatchNorm into ``dwconv`` and ``scale`` into ``pwconv`` (inference)."""
        if is_bn(self.norm):
            fold_bn_after_conv(self.dwconv, self.norm)
            self.norm = nn.Identity()
        scale_conv_output(self.pwconv, scale)
        return self


class DeformConvOp(nn.Module):
    """GLI's deformable local op: ``pwconv(SiLU(norm(DCN_kxk(x, offset_conv(x)))))``.

    The official 'dcn' op is DCNv1 (no modulation mask, ``modulated=False``); ``modulated=True``
    adds the DCNv2 mask (``sigmoid`` of extra offset-conv channels).

    Args:
        dim (int): Channels.
        kernel_size (int): Deformable kernel. Defaults to 5.
        deform_groups (int): Offset groups. Defaults to 1.
        modulated (bool): DCNv2 mask. Defaults to False.
        impl (str): Deformable conv implementation, see :class:`DeformConv2d`.
        norm_cfg (dict): Norm. Defaults to BN with eps 1e-6.
    """

    def __init__(self,
                 dim: int,
                 kernel_size: int = 5,
                 deform_groups: int = 1,
                 modulated: bool = False,
                 impl: str = 'auto',
                 norm_cfg: dict = dict(type='BN', eps=1e-6)):
        super().__init__()
        self.modulated = modulated
        self.num_offsets = deform_groups * 2 * kernel_size * kernel_size
        out = self.num_offsets * 3 // 2 if modulated else self.num_offsets
        self.offset_conv = nn.Conv2d(dim, out, 3, padding=1)
        self.dcn = DeformConv2d(dim, dim, kernel_size, deform_groups, impl)
        self.norm = build_norm(norm_cfg, dim)
        self.pwconv = nn.Conv2d(dim, dim, 1)

    def deform(self, x: torch.Tensor) -> torch.Tensor:
        """``norm(DCN(x, offsets(x)))``: the op before its activation and projection."""
        offset = self.offset_conv(x)
        mask = None
        if self.modulated:
            offset, mask = offset.split([self.num_offsets, self.num_offsets // 2], dim=1)
            mask = mask.sigmoid()
        return self.norm(self.dcn(x, offset, mask))

    def forward(self, x: torch.Tensor, scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``scale * op(x)``, ``scale`` (GLI's op weight) applied to ``pwconv``'s weights (the
        activation is recomputed in backward where :func:`act_conv` may)."""
        return act_conv(self.deform(x), 'silu', self.pwconv, scale, inplace=True)

    @torch.no_grad()
    def fuse(self, scale=1.) -> 'DeformConvOp':
        """Fold ``scale`` into ``pwconv`` (inference)."""
        scale_conv_output(self.pwconv, scale)
        return self


class GLI(nn.Module):
    """Global-Local Interaction: EATFormer's mixing sub-layer, ``x + drop_path(mix(ops(norm(x))))``.

    With one op (stages 1-2: ``['conv']``) the op runs on all channels. With several ops and
    ``split=True`` (published models) the channels are split into equal contiguous parts, one per
    op, and the op outputs, each weighted by ``softmax(alphas)``, are **interleaved** channel-wise
    (``[op0_0, op1_0, op0_1, ...]``); with ``ratio`` (two ops) the split is
    ``[int(C * ratio), round(C * (1 - ratio))]`` and the weighted outputs are concatenated. With
    ``split=False`` every op sees all channels and the (weighted) outputs are averaged. Without
    ``weighted`` the split outputs are concatenated unweighted.

    Args:
        dim (int): Channels.
        op_names (Sequence[str]): Ops: ``'conv'``, ``'msa'``, ``'mdmsa'``, ``'dcn'``.
        dim_head (int): Channels per attention head.
        window_size (int | tuple[int, int]): Attention window (``<= 0``: global).
        split (bool): Split channels between the ops. Defaults to True.
        weighted (bool): Softmax weights over the ops. Defaults to True.
        ratio (float, optional): Asymmetric split of two ops. Defaults to None.
        deform_groups (int): Groups of MD-MSA offsets / DCN offsets. Defaults to 2.
        kernel_size (int): Kernel of the conv / dcn ops and of MD-MSA's offset network.
        qkv_bias (bool): Bias of MSA's qkv projection (MD-MSA always has one).
        drop (float): Dropout after attention projections. Defaults to 0.
        attn_drop (float): Attention dropout. Defaults to 0.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        layer_scale_init_value (float): Initial layer scale of the attention ops.
        sampler (str): MD-MSA sampler, ``'grid_sample'`` or ``'mmcv'``.
        dcn_impl (str): 'dcn' op implementation: ``'auto'``, ``'mmcv'`` or ``'torchvision'``.
        norm_cfg (dict): Norm layers. Defaults to BN with eps 1e-6.
    """

    def __init__(self,
                 dim: int,
                 op_names: Sequence[str],
                 dim_head: int,
                 window_size: WindowSize,
                 split: bool = True,
                 weighted: bool = True,
                 ratio: Optional[float] = None,
                 deform_groups: int = 2,
                 kernel_size: int = 5,
                 qkv_bias: bool = True,
                 drop: float = 0.,
                 attn_drop: float = 0.,
                 drop_path: float = 0.,
                 layer_scale_init_value: float = 1e-4,
                 sampler: str = 'grid_sample',
                 dcn_impl: str = 'auto',
                 norm_cfg: dict = dict(type='BN', eps=1e-6)):
        super().__init__()
        unknown = [name for name in op_names if name not in GLI_OPS]
        if unknown or not op_names:
            raise ValueError(f'GLI op_names must be a non-empty list of {sorted(set(GLI_OPS))}, '
                             f'got {list(op_names)}')
        num_ops = len(op_names)
        self.split = split and num_ops > 1
        self.ratio = ratio if self.split else None
        if self.ratio:
            if num_ops != 2:
                raise ValueError(f'GLI ratio needs exactly two ops, got {list(op_names)}')
            dims = [int(dim * ratio), round(dim * (1 - ratio))]
        elif self.split:
            if dim % num_ops:
                raise ValueError(f'GLI channels {dim} must split evenly into {num_ops} ops')
            dims = [dim // num_ops] * num_ops
        else:
            dims = [dim] * num_ops
        self.dims = dims
        self.norm = build_norm(norm_cfg, dim)
        self.ops = nn.ModuleList()
        for name, d in zip(op_names, dims):
            name = GLI_OPS[name]
            if name == 'conv':
                op = ConvOp(d, kernel_size, norm_cfg)
            elif name == 'dcn':
                op = DeformConvOp(d, kernel_size, deform_groups, impl=dcn_impl, norm_cfg=norm_cfg)
            elif name == 'msa':
                op = WindowMSA(d, dim_head, window_size, qkv_bias, attn_drop, drop,
                               layer_scale_init_value)
            else:
                op = MDMSA(d, dim_head, window_size, deform_groups, kernel_size, True, attn_drop,
                           drop, layer_scale_init_value, sampler, norm_cfg)
            self.ops.append(op)
        self.alphas = nn.Parameter(torch.full((num_ops, ), 1e-3)) \
            if weighted and num_ops > 1 else None
        # how the op outputs are combined (the official code's rules)
        if num_ops == 1:
            self.merge = 'single'
        elif not self.split:
            self.merge = 'mean'
        elif self.ratio or not weighted:
            self.merge = 'cat'
        else:
            self.merge = 'interleave'
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def _op_outputs(self, h: torch.Tensor) -> List[torch.Tensor]:
        """Every op on its share of ``h``, weighted by ``softmax(alphas)`` (applied to the ops'
        output projection weights)."""
        inputs = list(h.split(self.dims, dim=1)) if self.split else [h] * len(self.ops)
        weights = self.alphas.softmax(-1) if self.alphas is not None else None
        return [op(inp, None if weights is None else weights[i])
                for i, (op, inp) in enumerate(zip(self.ops, inputs))]

    def _merge(self, outs: List[torch.Tensor]) -> torch.Tensor:
        if self.merge == 'interleave':
            return interleave_channels(outs)
        if self.merge == 'mean':
            return torch.stack(outs, dim=-1).mean(-1)
        return torch.cat(outs, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast_route(self, x):
            return self.forward_fast(x)
        h = self.norm(x)
        y = self.ops[0](h) if self.merge == 'single' else self._merge(self._op_outputs(h))
        return x + self.drop_path(y)

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """Training: the residual and stochastic depth in one pass. Inference: the residual
        added in place to the single conv op's projection (stages 1-2), or the interleaved op
        outputs added to it without a stacked copy."""
        h = self.norm(x)
        if not fused_inference(x):
            y = self.ops[0](h) if self.merge == 'single' else self._merge(self._op_outputs(h))
            return add_residual(x, y, self.drop_path)
        if self.merge == 'single':
            if isinstance(self.ops[0], ConvOp):
                return self.ops[0](h, residual=x)
            return x + self.ops[0](h)
        outs = self._op_outputs(h)
        if self.merge == 'interleave':
            return interleave_add(x, outs)
        return x + self._merge(outs)

    _fuses_children = True  # its ops fold GLI's op weights: fuse_modules leaves them to it

    @torch.no_grad()
    def fuse(self) -> 'GLI':
        """Fold the op weights ``softmax(alphas)`` and the ops' BatchNorms / layer scales into
        their last convolutions (exact; inference only)."""
        weights = self.alphas.softmax(-1) if self.alphas is not None else [1.] * len(self.ops)
        for op, weight in zip(self.ops, weights):
            op.fuse(weight)
        self.alphas = None
        return self

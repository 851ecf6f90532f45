# Copyright (c) mmevo contributors. All rights reserved.
"""GroupMixFormer: `Advancing Vision Transformers with Group-Mix Attention
<https://arxiv.org/abs/2311.15157>`_ (Ge et al., 2023).

A re-implementation of the official model (``AILab-CVC/GroupMixFormer``), numerically equal to it
with converted weights (``tools/model_converters/groupmixformer_to_mmevo.py``), for
classification and, with per-output norms and input padding, for detection and segmentation
(which the authors did not release).
"""
import math
from collections import OrderedDict
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath

from mmevo.registry import MODELS
from mmevo.utils.validation import (
    BOOL,
    NONE,
    POSITIVE_INT,
    POSITIVE_REAL,
    PROBABILITY,
    Domain,
    per_stage,
    real,
)
from ..layers.conv_rel_pos import DEFAULT_CRPE_WINDOW
from ..layers.depthwise import dwconv
from ..layers.fast_path import fast_route, fused_inference
from ..layers.group_mix_attention import (
    GroupMixAttention,
    SeparableConv2d,
    separable_conv_bn_hardswish,
)
from ..layers.inference_conv import conv_bn_act
from ..layers.lean_linear import gelu_linear, layer_norm_linear
from ..layers.lean_ops import conv_bn_act_lean
from ..layers.mlp import Mlp
from ..layers.norm import LayerNorm2d, build_norm
from ..layers.residual import add_residual
from .base_backbone import StagedBackbone


class GMABlock(nn.Module):
    """GroupMixFormer block on ``(B, C, H, W)`` maps::

        x = x + DWConv3x3(x)                       # convolutional position encoding
        x = x + DropPath(GMA(LN(x)))
        x = x + DropPath(MLP(LN(x)))

    Args:
        dim (int): Channels.
        mlp_ratio (float): MLP hidden channels are ``int(dim * mlp_ratio)``.
        num_heads (int): GMA heads.
        qkv_bias (bool): Bias of GMA's qkv projection.
        qk_scale (float, optional): Overrides GMA's scale.
        crpe_window (dict): Kernel size -> heads of GMA's position encoding.
        drop (float): Dropout after GMA's projection and in the MLP. Defaults to 0.
        drop_path (float): Stochastic depth of both residual branches. Defaults to 0.
        norm_cfg (dict): Norm of GMA's aggregators. Defaults to BN.
    """

    def __init__(self,
                 dim: int,
                 mlp_ratio: float,
                 num_heads: int = 8,
                 qkv_bias: bool = True,
                 qk_scale: Optional[float] = None,
                 crpe_window: Dict[int, int] = DEFAULT_CRPE_WINDOW,
                 drop: float = 0.,
                 drop_path: float = 0.,
                 norm_cfg: dict = dict(type='BN')):
        super().__init__()
        self.cpe = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = LayerNorm2d(dim, eps=1e-6)
        self.attn = GroupMixAttention(dim, num_heads, qkv_bias, qk_scale, drop, crpe_window,
                                      norm_cfg)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast_route(self, x):
            return self.forward_fast(x)
        x = x + self.cpe(x)
        x = x + self.drop_path(self.attn(self.norm1(x)))
        x = x.permute(0, 2, 3, 1)  # the MLP on channels-last tokens (a view of the map)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.permute(0, 3, 1, 2)

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` without storing what is cheap to recompute: in training GMA's ``qkv``
        and the MLP keep only the un-normalised tokens, the MLP also ``fc1``'s output
        (:mod:`~mmevo.models.layers.lean_linear`); in inference the residuals are added in
        place."""
        inference = not torch.is_grad_enabled()
        x = dwconv(x, self.cpe).add_(x) if inference else x + dwconv(x, self.cpe)
        if inference:
            y = self.attn(self.norm1(x))
        else:
            qkv = layer_norm_linear(x.permute(0, 2, 3, 1), self.norm1, self.attn.qkv)
            y = self.attn.mix(self.attn.stack(qkv))
        x = y.add_(x) if inference else add_residual(x, y, self.drop_path)
        x = x.permute(0, 2, 3, 1)
        if self.mlp.drop.p > 0:
            y = self.mlp(self.norm2(x))
        else:
            y = gelu_linear(layer_norm_linear(x, self.norm2, self.mlp.fc1), self.mlp.fc2)
        x = y.add_(x) if inference else add_residual(x, y, self.drop_path)
        return x.permute(0, 3, 1, 2)


class PatchEmbed(nn.Sequential):
    """Separable 3x3 convolution (stride 1 or 2), norm, Hardswish.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): 1 (stage 1) or 2.
        norm_cfg (dict): The norm.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm_cfg: dict):
        super().__init__(
            OrderedDict(
                conv=SeparableConv2d(in_channels, out_channels, 3, stride),
                norm=build_norm(norm_cfg, out_channels),
                act=nn.Hardswish()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast_route(self, x):
            return separable_conv_bn_hardswish(x, self.conv, self.norm)
        return self.act(self.norm(self.conv(x)))


class ConvStem(nn.Sequential):
    """Two stride-2 3x3 convolutions (with bias), each followed by a norm and Hardswish.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels (the first convolution has half).
        norm_cfg (dict): The norms.
    """

    def __init__(self, in_channels: int, out_channels: int, norm_cfg: dict):
        mid = out_channels // 2
        super().__init__(
            OrderedDict(
                conv1=nn.Conv2d(in_channels, mid, 3, 2, 1),
                norm1=build_norm(norm_cfg, mid),
                act1=nn.Hardswish(),
                conv2=nn.Conv2d(mid, out_channels, 3, 2, 1),
                norm2=build_norm(norm_cfg, out_channels),
                act2=nn.Hardswish()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not fast_route(self, x):
            return super().forward(x)
        if fused_inference(x):
            x = conv_bn_act(x, self.conv1, self.norm1, 'hardswish')
            return conv_bn_act(x, self.conv2, self.norm2, 'hardswish')
        # conv1 (3 input channels) is cheap to recompute in backward, conv2 is not
        x = conv_bn_act_lean(x, self.conv1, self.norm1, 'hardswish')
        return conv_bn_act_lean(self.conv2(x), None, self.norm2, 'hardswish')


def _arch(embed_dims, depths, mlp_ratios, drop_path_rate) -> dict:
    return dict(embed_dims=embed_dims, depths=depths, mlp_ratios=mlp_ratios,
                drop_path_rate=drop_path_rate)


def _crpe_window_ok(window) -> bool:
    return isinstance(window, dict) and len(window) > 0 and all(
        isinstance(k, int) and not isinstance(k, bool) and k > 0 and k % 2 == 1
        and isinstance(n, int) and not isinstance(n, bool) and n > 0
        for k, n in window.items())


_NORM_CFG = Domain(lambda v: isinstance(v, dict) and 'type' in v,
                   "a dict with a 'type' (mmcv norm config)")


@MODELS.register_module()
class GroupMixFormer(StagedBackbone):
    """GroupMixFormer backbone.

    A paper-faithful port of `GroupMixFormer <https://arxiv.org/abs/2311.15157>`_: a stem of two
    stride-2 3x3 convolutions (BN, Hardswish), then four stages, each a separable-convolution
    patch embedding (stride 1 in stage 1, 2 after) and :class:`GMABlock` s with Group-Mix
    Attention, at strides 4/8/16/32. The classification head (BN, global average pooling,
    linear) is :class:`~mmevo.models.heads.GroupMixFormerClsHead`. Official checkpoints load
    after ``tools/model_converters/groupmixformer_to_mmevo.py``.

    Input sides must be multiples of 32 (the official patch embeddings assume even maps). The
    classification model refuses other sizes; with ``pad_to_multiple=True`` (detection and
    segmentation configs) the input is zero-padded on the right and bottom to multiples of 32 and
    every output is cropped back to ``ceil(H / stride) x ceil(W / stride)``.

    Args:
        arch (str | dict): A name in :attr:`arch_zoo` (``'mobile'``/``'m'``, the official
            ``miny``; ``'tiny'``/``'t'``; ``'small'``/``'s'``; ``'base'``/``'b'``;
            ``'large'``/``'l'``, the released yaml, which differs from the published L) or a dict
            with per-stage ``embed_dims`` (multiples of 5 whose ``dim // 5 * 4`` is a multiple of
            ``num_heads``), ``depths`` and ``mlp_ratios``, and optionally ``num_heads``
            (default 8), ``crpe_window`` (kernel -> heads, summing to ``num_heads``; default
            ``{3: 2, 5: 3, 7: 3}``), ``qkv_bias`` (True), ``qk_scale`` (None: ``(C // heads) **
            -0.5``) and ``drop_path_rate`` (the published stochastic depth). Every value is
            checked against :attr:`arch_domains`.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (int | Sequence[int]): Stages whose outputs are returned. Defaults to ``-1``.
        drop_path_rate (float, optional): Overrides the arch's stochastic depth rate (linearly
            increased over all blocks); in ``[0, 1)``.
        drop_rate (float): Dropout after the attention projection and in the MLPs. Defaults
            to 0.
        norm_cfg (dict): The BatchNorms of the stem, patch embeddings and aggregators. Defaults
            to ``dict(type='BN')`` (eps 1e-5); the official model uses SyncBN, which configs for
            several GPUs state (identical in eval).
        out_norm_cfg (dict, optional): A norm applied to every returned map, as mmdet/mmseg's
            hierarchical backbones (Swin, ConvNeXt) have; the detection/segmentation configs use
            ``dict(type='LN2d', eps=1e-6)``. None (classification): the raw stage maps, as the
            official model returns them.
        pad_to_multiple (bool): Accept any input size by padding to multiples of 32 and cropping
            the outputs (dense tasks). False refuses such inputs. Defaults to False.
        frozen_stages (int): -1: none; 0: the stem; ``i``: the stem and stages ``0..i-1``
            (mmdet semantics). Defaults to -1.
        norm_eval (bool): Keep BN layers in eval mode while training. Defaults to False.
        with_cp (bool): Gradient checkpointing of the stem and of every block. Defaults to
            False.
        channels_last (bool): Compute on channels-last maps, so that the token-wise layers
            (LayerNorms, linear layers) read the maps as ``(B, H, W, C)`` tokens without copies.
            Defaults to True.
        out_channels_last (bool): Return the maps channels-last as computed instead of
            contiguous NCHW. Defaults to False.
        init_cfg (dict | list, optional): ``dict(type='Pretrained', checkpoint=...,
            prefix='backbone.')`` loads strictly (a classification checkpoint has no output
            norms: they keep their initialisation). Defaults to the official initialisation
            (truncated normal std 0.02 for linear weights, zero biases).

    Examples:
        >>> import torch
        >>> from mmevo.models import GroupMixFormer
        >>> model = GroupMixFormer('tiny', out_indices=(0, 1, 2, 3)).eval()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 224, 224))]
        [(1, 80, 56, 56), (1, 160, 28, 28), (1, 200, 14, 14), (1, 240, 7, 7)]
    """
    num_stages = 4
    input_multiple = 32
    arch_zoo = {
        **dict.fromkeys(['m', 'mobile'], _arch([40, 80, 160, 160], [3, 3, 12, 4], [4, 4, 4, 4],
                                               0.1)),
        **dict.fromkeys(['t', 'tiny'], _arch([80, 160, 200, 240], [4, 4, 12, 4], [4, 4, 4, 4],
                                             0.1)),
        **dict.fromkeys(['s', 'small'], _arch([80, 160, 320, 320], [2, 4, 12, 4], [4, 4, 4, 4],
                                              0.2)),
        **dict.fromkeys(['b', 'base'], _arch([200, 240, 320, 480], [8, 8, 12, 8], [2, 2, 4, 4],
                                             0.5)),
        # The released configs/groupmixformer_large.yaml ("need to adjust"): 71.8M parameters,
        # not the published L (70.3M).
        **dict.fromkeys(['l', 'large'], _arch([240, 320, 360, 480], [8, 10, 30, 10],
                                              [4, 4, 2, 2], 0.1)),
    }
    essential_keys = ('embed_dims', 'depths', 'mlp_ratios')
    arch_defaults = dict(
        num_heads=8,
        crpe_window=DEFAULT_CRPE_WINDOW,
        qkv_bias=True,
        qk_scale=None,
        drop_path_rate=0.)
    arch_domains = {
        'embed_dims': lambda n: per_stage(POSITIVE_INT, n),
        'depths': lambda n: per_stage(POSITIVE_INT, n),
        'mlp_ratios': lambda n: per_stage(POSITIVE_REAL, n),
        'num_heads': POSITIVE_INT,
        'crpe_window': Domain(_crpe_window_ok, 'a dict of odd kernel sizes -> positive head '
                              'counts'),
        'qkv_bias': BOOL,
        'qk_scale': NONE | POSITIVE_REAL,
        'drop_path_rate': real(0, 1, high_open=True),
    }
    arg_domains = {
        'drop_rate': PROBABILITY,
        'norm_cfg': _NORM_CFG,
        'out_norm_cfg': NONE | _NORM_CFG,
        'pad_to_multiple': BOOL,
    }

    def __init__(self,
                 arch: Union[str, dict] = 'small',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_path_rate: Optional[float] = None,
                 drop_rate: float = 0.,
                 norm_cfg: dict = dict(type='BN'),
                 out_norm_cfg: Optional[dict] = None,
                 pad_to_multiple: bool = False,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 channels_last: bool = True,
                 out_channels_last: bool = False,
                 init_cfg: Optional[Union[dict, list]] = None):
        if init_cfg is None:
            init_cfg = dict(type='TruncNormal', layer='Linear', std=.02, bias=0.)
        super().__init__(
            arch,
            in_channels=in_channels,
            out_indices=out_indices,
            drop_path_rate=drop_path_rate,
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
            with_cp=with_cp,
            channels_last=channels_last,
            out_channels_last=out_channels_last,
            init_cfg=init_cfg)
        self.check_args(drop_rate=drop_rate, norm_cfg=norm_cfg, out_norm_cfg=out_norm_cfg,
                        pad_to_multiple=pad_to_multiple)
        s = self.arch_settings
        self.embed_dims = list(s['embed_dims'])
        self.depths = list(s['depths'])
        self.pad_to_multiple = pad_to_multiple
        if pad_to_multiple:
            self.input_multiple = 1  # any size: padded in forward
        self._out_sizes: Optional[Sequence[Tuple[int, int]]] = None

        self.stem = ConvStem(in_channels, self.embed_dims[0], norm_cfg)

        dpr = iter(self.drop_path_rates(sum(self.depths)))
        self.stages = nn.ModuleList()
        in_dim = self.embed_dims[0]
        for i, (dim, depth) in enumerate(zip(self.embed_dims, self.depths)):
            layers = [PatchEmbed(in_dim, dim, 1 if i == 0 else 2, norm_cfg)]
            layers += [
                GMABlock(dim, s['mlp_ratios'][i], s['num_heads'], s['qkv_bias'], s['qk_scale'],
                         s['crpe_window'], drop_rate, next(dpr), norm_cfg) for _ in range(depth)
            ]
            self.stages.append(nn.Sequential(*layers))
            in_dim = dim
        if out_norm_cfg is not None:
            self.out_norms = nn.ModuleList(
                build_norm(out_norm_cfg, self.embed_dims[i]) for i in self.out_indices)
        self._post_build(self.embed_dims, [4, 8, 16, 32])

    @classmethod
    def check_arch_rules(cls, s: dict) -> None:
        name = cls.__name__
        heads = s['num_heads']
        for i, dim in enumerate(s['embed_dims']):
            if dim % 5 or dim // 5 * 4 % heads:
                raise ValueError(
                    f"{name}: arch['embed_dims'][{i}]={dim} must be a multiple of 5 whose "
                    f"attention part dim // 5 * 4 = {dim // 5 * 4} is a multiple of "
                    f"arch['num_heads']={heads} (e.g. a multiple of 10 for 8 heads)")
        if sum(s['crpe_window'].values()) != heads:
            raise ValueError(f"{name}: arch['crpe_window']={s['crpe_window']!r} assigns "
                             f"{sum(s['crpe_window'].values())} heads; they must sum to "
                             f"arch['num_heads']={heads}")

    def adapt_state_dict(self, state_dict: Dict[str, torch.Tensor], prefix: str) -> None:
        """A backbone checkpoint without output norms (a converted classification checkpoint)
        keeps this model's output norms at their initialisation; every other key must match."""
        if self.out_norms is None or any(k.startswith(prefix + 'out_norms.') for k in state_dict):
            return
        if any(k.startswith(prefix + 'stages.') for k in state_dict):
            state_dict.update(self.out_norms.state_dict(prefix=prefix + 'out_norms.'))

    # ------------------------------------------------------------------- input sizes

    def _multiple_reason(self) -> str:
        return ' in classification mode (pad_to_multiple=False)'

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        if not self.pad_to_multiple:
            return super().forward(x)
        self.check_input(x)
        h, w = x.shape[-2:]
        m = self.stage_strides[-1]
        if h % m == 0 and w % m == 0:
            return super().forward(x)
        self._out_sizes = [(math.ceil(h / s), math.ceil(w / s)) for s in self.stage_strides]
        try:
            return super().forward(F.pad(x, (0, -w % m, 0, -h % m)))
        finally:
            self._out_sizes = None

    def stage_output(self, index: int, x: torch.Tensor) -> torch.Tensor:
        if self._out_sizes is None:
            return x
        h, w = self._out_sizes[index]
        if self.out_channels_last and x.is_contiguous(memory_format=torch.channels_last):
            return x[..., :h, :w].contiguous(memory_format=torch.channels_last)
        return x[..., :h, :w]  # the base returns contiguous NCHW maps

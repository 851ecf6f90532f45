# Copyright (c) mmevo contributors. All rights reserved.
"""EdgeFormer / ParC-Net: `ParC-Net: Position Aware Circular Convolution with Merits from ConvNets
and Transformer <https://arxiv.org/abs/2203.03952>`_ (Zhang et al., ECCV 2022; first titled
"EdgeFormer: Improving Light-weight ConvNets by Learning from Vision Transformers").

A re-implementation of the official model (``hkzhang91/EdgeFormer``, on ml-cvnets), numerically
equal to it with converted weights (``tools/model_converters/edgeformer_to_mmevo.py``). A
MobileViT-like network: a stride-2 convolution and MobileNetV2 blocks, then three stages of a
stride-2 MobileNetV2 block followed by an *outer frame* whose global part is a stack of
:class:`~mmevo.models.layers.gcc.GCCBlock` (global circular convolutions with meta kernels and
position embeddings, and a channel-attention FFN).
"""
import math
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule

from mmevo.registry import MODELS
from mmevo.utils.validation import (
    BOOL,
    POSITIVE_INT,
    POSITIVE_REAL,
    Domain,
    one_of,
    real,
    sequence_of,
)
from ..layers.fast_path import fast_route, fused_inference
from ..layers.gcc import GCCBlock
from ..layers.inference_conv import conv_bn_act
from ..layers.lean_ops import bn_conv
from .base_backbone import StagedBackbone

FUSIONS = ('concat', 'add')
OUTPUT_STRIDES = (8, 16, 32)


def make_divisible(value: float, divisor: int = 8) -> int:
    """The nearest multiple of ``divisor`` (at least ``divisor``), not more than 10% below
    ``value`` (MobileNetV2's rule, used for the hidden widths)."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def conv_norm_act(in_channels: int,
                  out_channels: int,
                  kernel_size: int,
                  norm_cfg: dict,
                  stride: int = 1,
                  dilation: int = 1,
                  groups: int = 1,
                  act: bool = True) -> ConvModule:
    """ml-cvnets' ``ConvLayer``: convolution (no bias, padding ``(k - 1) / 2 * dilation``),
    BatchNorm, SiLU."""
    return ConvModule(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=(kernel_size - 1) // 2 * dilation,
        dilation=dilation,
        groups=groups,
        bias=False,
        norm_cfg=norm_cfg,
        act_cfg=dict(type='SiLU', inplace=False) if act else None)


def run_conv_module(m: ConvModule, x: torch.Tensor,
                    residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``residual + m(x)`` through :func:`~mmevo.models.layers.conv_bn_act` (one oneDNN kernel
    in fused inference, the plain ops otherwise)."""
    return conv_bn_act(x, m.conv, m.norm if m.with_norm else None,
                       'silu' if m.with_activation else None, residual=residual)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion, 3x3 depth-wise (stride, dilation), 1x1 reduction (no
    activation), with the identity residual when the shape is kept.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of the depth-wise convolution.
        expand_ratio (float): Hidden channels are ``make_divisible(round(in * ratio), 8)``; 1:
            no expansion convolution.
        dilation (int): Dilation of the depth-wise convolution. Defaults to 1.
        norm_cfg (dict): Norm layers. Defaults to BN.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int,
                 expand_ratio: float,
                 dilation: int = 1,
                 norm_cfg: dict = dict(type='BN')):
        super().__init__()
        hidden = make_divisible(int(round(in_channels * expand_ratio)), 8)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.exp_1x1 = conv_norm_act(in_channels, hidden, 1, norm_cfg) \
            if expand_ratio != 1 else None
        self.conv_3x3 = conv_norm_act(hidden, hidden, 3, norm_cfg, stride, dilation, hidden)
        self.red_1x1 = conv_norm_act(hidden, out_channels, 1, norm_cfg, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast_route(self, x):
            return self.forward_fast(x)
        y = x if self.exp_1x1 is None else self.exp_1x1(x)
        y = self.red_1x1(self.conv_3x3(y))
        return x + y if self.use_residual else y

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: each convolution with its BatchNorm and SiLU in one oneDNN kernel, the
        residual added in place. Training: each BatchNorm and SiLU with the convolution after
        it in one autograd node that keeps its input and the activated map, recomputing the
        normalised one (:func:`bn_conv` with ``keep_act``): the expanded maps are stored twice
        instead of three times, for one multiply-add pass in backward."""
        if not fused_inference(x):
            layers = [m for m in (self.exp_1x1, self.conv_3x3, self.red_1x1) if m is not None]
            y = layers[0].conv(x)
            for prev, layer in zip(layers, layers[1:]):
                y = bn_conv(y, prev.norm, layer.conv, 'silu', keep_act=True)
            y = self.red_1x1.norm(y)
            return x + y if self.use_residual else y
        y = x if self.exp_1x1 is None else run_conv_module(self.exp_1x1, x)
        y = run_conv_module(self.conv_3x3, y)
        return run_conv_module(self.red_1x1, y, x if self.use_residual else None)


class OuterFrame(nn.Module):
    """EdgeFormer's outer frame (official ``outer_frame_v1``): local convolutions around a stack
    of GCC blocks, fused with the frame's input.

    ``h = channel_adaptive(spatial_global_rep(dim_adaptive(x)))``, then
    ``local_global_fusion(concat(h, x))`` (``fusion='concat'``) or ``local_global_fusion(x + h)``
    (``'add'``), where ``dim_adaptive`` is a grouped 3x3 conv-BN-SiLU (groups
    ``gcd(gcc_channels, channels)``) and a 1x1 convolution, ``spatial_global_rep`` the GCC blocks
    and a BatchNorm, ``channel_adaptive`` a grouped 1x1 conv-BN-SiLU and the fusion a 3x3
    conv-BN-SiLU. There is no residual around the frame besides the fusion.

    Args:
        channels (int): Input and output channels.
        gcc_channels (int): Channels of the GCC blocks (even).
        ffn_channels (int): Hidden channels of their FFNs.
        depth (int): Number of GCC blocks.
        kernel_size (int): Meta-kernel length (the map size at the native input).
        fusion (str): ``'concat'`` or ``'add'``.
        use_pe (bool): Position embeddings in the first GCC block. Defaults to True.
        drop (float): Dropout on the GCC blocks' FFN outputs. Defaults to 0.1.
        ffn_drop (float): Dropout after their FFN activation. Defaults to 0.
        drop_paths (Sequence[float], optional): Stochastic depth per GCC block.
        norm_cfg (dict): Norm layers of the convolutions. Defaults to BN.
    """

    def __init__(self,
                 channels: int,
                 gcc_channels: int,
                 ffn_channels: int,
                 depth: int,
                 kernel_size: int,
                 fusion: str = 'concat',
                 use_pe: bool = True,
                 drop: float = 0.1,
                 ffn_drop: float = 0.,
                 drop_paths: Optional[Sequence[float]] = None,
                 norm_cfg: dict = dict(type='BN')):
        super().__init__()
        groups = math.gcd(gcc_channels, channels)
        self.fusion = fusion
        self.dim_adaptive = nn.Sequential(
            conv_norm_act(channels, gcc_channels, 3, norm_cfg, groups=groups),
            nn.Conv2d(gcc_channels, gcc_channels, 1, bias=False))
        drop_paths = drop_paths or [0.] * depth
        blocks = [
            GCCBlock(gcc_channels, kernel_size, ffn_channels, use_pe=use_pe and i == 0,
                     ffn_drop=ffn_drop, drop=drop, drop_path=drop_paths[i])
            for i in range(depth)
        ]
        self.spatial_global_rep = nn.Sequential(*blocks, nn.BatchNorm2d(gcc_channels))
        self.channel_adaptive = conv_norm_act(gcc_channels, channels, 1, norm_cfg, groups=groups)
        fused = 2 * channels if fusion == 'concat' else channels
        self.local_global_fusion = conv_norm_act(fused, channels, 3, norm_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast_route(self, x):
            return self.forward_fast(x)
        h = self.channel_adaptive(self.spatial_global_rep(self.dim_adaptive(x)))
        h = torch.cat((h, x), dim=1) if self.fusion == 'concat' else x + h
        return self.local_global_fusion(h)

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """Inference: the conv-BN-SiLU layers as single oneDNN kernels."""
        h = self.dim_adaptive[1](run_conv_module(self.dim_adaptive[0], x))
        h = run_conv_module(self.channel_adaptive, self.spatial_global_rep(h))
        h = torch.cat((h, x), dim=1) if self.fusion == 'concat' else x + h
        return run_conv_module(self.local_global_fusion, h)


def _arch(stem_channels, mv2_channels, channels, gcc_channels, ffn_channels, depths,
          **kwargs) -> dict:
    return dict(stem_channels=stem_channels, mv2_channels=mv2_channels, mv2_depths=[1, 3],
                channels=channels, gcc_channels=gcc_channels, ffn_channels=ffn_channels,
                depths=depths, **kwargs)


def _three(item: Domain) -> Domain:
    return sequence_of(item, length=3)


def _two(item: Domain) -> Domain:
    return sequence_of(item, length=2)


@MODELS.register_module()
class EdgeFormer(StagedBackbone):
    """EdgeFormer (ParC-Net) backbone.

    A port of `ParC-Net / EdgeFormer <https://arxiv.org/abs/2203.03952>`_: the stem is the stride-2
    ``conv_1`` and ``layer_1`` (MobileNetV2 blocks, stride 2 in total); the four stages are the
    official ``layer_2`` (MobileNetV2 blocks, stride 4) and ``layer_3..layer_5`` (a stride-2
    MobileNetV2 block and an :class:`OuterFrame` of GCC blocks; strides 8/16/32). The
    classifier's ``conv_1x1_exp``, pooling and linear layer are :class:`EdgeFormerClsHead`.

    **Input sizes.** The meta kernels and position embeddings have the lengths of the stage maps at
    the native 256x256 input (32/16/8); there they are used as stored. At any other size each is
    resized (bilinear, ``align_corners=True``) to the length of the map along its own axis: for
    square inputs this is exactly what the official code does; for non-square inputs (which the
    official code rejects) the H kernels and embeddings take the map height and the W ones the
    width. Odd sizes are fine: every stride-2 layer gives ``ceil(size / 2)``.

    Args:
        arch (str | dict): ``'xs'``/``'x_small'``, ``'s'``/``'small'``, ``'h'`` (the
            official ``scale_xs``/``scale_s``/``scale_h``; XS fuses by addition, S and H by
            concatenation), or a dict with

            - ``stem_channels`` (int): ``conv_1`` width; ``stem_kernel_size`` (3 or 5, default 3);
            - ``mv2_channels``, ``mv2_depths`` (2 ints each): widths and block counts of
              ``layer_1`` (stride 1) and ``layer_2`` (stride 2); ``mv2_expand_ratios``
              (default ``[4, 4]``);
            - ``channels``, ``gcc_channels``, ``ffn_channels``, ``depths`` (3 ints each): for
              ``layer_3..layer_5``, the stage width, the GCC blocks' width (even, at least 16:
              channel attention reduces it 16x) and FFN width, and the number of GCC blocks;
            - ``meta_kernel_sizes`` (3 ints, default ``[32, 16, 8]``): the stage map sizes at the
              native input; ``down_expand_ratios`` (default ``[4, 4, 4]``) of the stride-2
              blocks; ``fusion`` (``'concat'``/``'add'``, default ``'concat'``); ``use_pe``
              (default True).
        in_channels (int): Input channels. Defaults to 3.
        out_indices (int | Sequence[int]): Stages returned (0..3: strides 4/8/16/32). Defaults
            to -1.
        output_stride (int): 32, or 16 / 8 for dense prediction as in the official DeepLabv3:
            the last (16) or last two (8) stages keep their resolution, their stride-2
            MobileNetV2 blocks take stride 1 and the following one dilation 2 (the official
            rule: a block is dilated by the strides removed before it). Defaults to 32.
        drop_rate (float): Dropout on the GCC blocks' FFN outputs. Defaults to 0.1 (official).
        ffn_drop_rate (float): Dropout after the GCC FFN activation. Defaults to 0.
        drop_path_rate (float, optional): Stochastic depth over the GCC blocks (not used
            officially). Defaults to 0.
        norm_cfg (dict): Norm layers of the convolutions (the GCC blocks keep BatchNorm).
            Defaults to ``dict(type='BN')`` (eps 1e-5).
        frozen_stages, norm_eval, with_cp, channels_last, out_channels_last, init_cfg: see
            :class:`~mmevo.models.backbones.StagedBackbone`. ``init_cfg`` defaults to the
            official initialisation (Kaiming-normal fan-out convolutions, unit BatchNorms).

    Examples:
        >>> import torch
        >>> from mmevo.models import EdgeFormer
        >>> model = EdgeFormer('s', out_indices=(0, 1, 2, 3)).eval()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 256, 256))]
        [(1, 64, 64, 64), (1, 96, 32, 32), (1, 128, 16, 16), (1, 160, 8, 8)]
    """
    num_stages = 4
    arch_defaults = dict(
        stem_kernel_size=3,
        mv2_expand_ratios=[4, 4],
        meta_kernel_sizes=[32, 16, 8],
        down_expand_ratios=[4, 4, 4],
        fusion='concat',
        use_pe=True,
        drop_path_rate=0.)
    arch_zoo = {
        **dict.fromkeys(['xs', 'x_small'],
                        _arch(16, [32, 64], [96, 128, 160], [96, 128, 160], [192, 256, 320],
                              [2, 3, 2], fusion='add')),
        **dict.fromkeys(['s', 'small'],
                        _arch(16, [32, 64], [96, 128, 160], [192, 256, 320], [384, 512, 640],
                              [2, 4, 3])),
        **dict.fromkeys(['h'],
                        _arch(48, [96, 144], [216, 288, 432], [324, 432, 432], [648, 864, 864],
                              [3, 9, 3], stem_kernel_size=5)),
    }
    essential_keys = ('stem_channels', 'mv2_channels', 'mv2_depths', 'channels', 'gcc_channels',
                      'ffn_channels', 'depths')
    arch_domains = {
        'stem_channels': POSITIVE_INT,
        'stem_kernel_size': one_of(3, 5),
        'mv2_channels': _two(POSITIVE_INT),
        'mv2_depths': _two(POSITIVE_INT),
        'mv2_expand_ratios': _two(POSITIVE_REAL),
        'channels': _three(POSITIVE_INT),
        'gcc_channels': _three(Domain(lambda v: isinstance(v, int) and v >= 16 and v % 2 == 0,
                                      'an even int >= 16')),
        'ffn_channels': _three(POSITIVE_INT),
        'depths': _three(POSITIVE_INT),
        'meta_kernel_sizes': _three(POSITIVE_INT),
        'down_expand_ratios': _three(POSITIVE_REAL),
        'fusion': one_of(*FUSIONS),
        'use_pe': BOOL,
        'drop_path_rate': real(0, 1, high_open=True),
    }
    arg_domains = {
        'output_stride': one_of(*OUTPUT_STRIDES),
        'drop_rate': real(0, 1, high_open=True),
        'ffn_drop_rate': real(0, 1, high_open=True),
        'norm_cfg': Domain(lambda v: isinstance(v, dict) and 'type' in v,
                           "a dict with a 'type' (mmcv norm config)"),
    }

    def __init__(self,
                 arch: Union[str, dict] = 's',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 output_stride: int = 32,
                 drop_rate: float = 0.1,
                 ffn_drop_rate: float = 0.,
                 drop_path_rate: Optional[float] = None,
                 norm_cfg: dict = dict(type='BN'),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 channels_last: bool = False,
                 out_channels_last: bool = False,
                 init_cfg: Optional[Union[dict, list]] = [
                     dict(type='Kaiming', layer='Conv2d', mode='fan_out', bias=0.),
                     dict(type='Constant', layer='_BatchNorm', val=1., bias=0.)
                 ]):
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
        self.check_args(output_stride=output_stride, drop_rate=drop_rate,
                        ffn_drop_rate=ffn_drop_rate, norm_cfg=norm_cfg)
        s = self.arch_settings
        self.output_stride = output_stride

        stem_k = s['stem_kernel_size']
        layers = [conv_norm_act(in_channels, s['stem_channels'], stem_k, norm_cfg, stride=2)]
        layers += self._mv2_layer(s['stem_channels'], s['mv2_channels'][0], s['mv2_depths'][0],
                                  1, s['mv2_expand_ratios'][0], norm_cfg)
        self.stem = nn.Sequential(*layers)

        self.stages = nn.ModuleList([
            nn.Sequential(*self._mv2_layer(s['mv2_channels'][0], s['mv2_channels'][1],
                                           s['mv2_depths'][1], 2, s['mv2_expand_ratios'][1],
                                           norm_cfg))
        ])
        # ``output_stride`` 16: layer_5 at stride 1; 8: layer_4 and layer_5. As officially, a
        # stride-2 block that is turned into stride 1 keeps the dilation of the layers before it,
        # and the blocks after it are dilated by the removed stride.
        undilated = {32: 3, 16: 2, 8: 1}[output_stride]
        dpr = iter(self.drop_path_rates(sum(s['depths'])))
        in_dim, dilation, strides = s['mv2_channels'][1], 1, [4]
        for i in range(3):
            down_dilation, stride = dilation, 2
            if i >= undilated:
                dilation, stride = dilation * 2, 1
            strides.append(strides[-1] * stride)
            dim = s['channels'][i]
            down = InvertedResidual(in_dim, dim, stride, s['down_expand_ratios'][i],
                                    dilation=down_dilation, norm_cfg=norm_cfg)
            frame = OuterFrame(
                dim,
                s['gcc_channels'][i],
                s['ffn_channels'][i],
                s['depths'][i],
                s['meta_kernel_sizes'][i],
                fusion=s['fusion'],
                use_pe=s['use_pe'],
                drop=drop_rate,
                ffn_drop=ffn_drop_rate,
                drop_paths=[next(dpr) for _ in range(s['depths'][i])],
                norm_cfg=norm_cfg)
            self.stages.append(nn.Sequential(down, frame))
            in_dim = dim
        self._post_build([s['mv2_channels'][1], *s['channels']], strides)

    @staticmethod
    def _mv2_layer(in_channels: int, out_channels: int, depth: int, stride: int,
                   expand_ratio: float, norm_cfg: dict) -> list:
        return [
            InvertedResidual(in_channels if j == 0 else out_channels, out_channels,
                             stride if j == 0 else 1, expand_ratio, norm_cfg=norm_cfg)
            for j in range(depth)
        ]

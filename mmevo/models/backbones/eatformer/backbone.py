# Copyright (c) mmevo contributors. All rights reserved.
"""EATFormer: `EATFormer: Improving Vision Transformer Inspired by Evolutionary Algorithm
<https://arxiv.org/abs/2206.09325>`_ (Zhang et al., IJCV 2024).

A re-implementation of the official model (``zhangzjn/EATFormer``), numerically equal to it with
converted weights (``tools/model_converters/eatformer_to_mmevo.py``), for classification and, with
the downstream settings of the official detection/segmentation backbone (``EAFormer``: window 14,
global-window periods, four outputs), for detection and segmentation.
"""
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn

from mmevo.registry import MODELS
from mmevo.utils.validation import (
    BOOL,
    POSITIVE_INT,
    POSITIVE_REAL,
    Domain,
    integer,
    one_of,
    per_stage,
    real,
    sequence_of,
)
from ...layers.deform import DEFORM_CONV_IMPLS, SAMPLERS
from ...layers.ffn import ConvFFN
from ...layers.window import WindowSize
from ..base_backbone import StagedBackbone
from .gli import GLI, GLI_OPS
from .msra import MSRA, MSRA_MODES


class EATBlock(nn.Module):
    """One EATFormer block: ``FFN(GLI(MSRA(x)))``, three residual sub-layers.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of the MSRA sub-layer (2 on the first block of stages 2-4).
        kernel_size (int): MSRA kernel.
        dilations (Sequence[int]): MSRA dilations.
        op_names (Sequence[str]): GLI ops.
        dim_head (int): Channels per attention head.
        window_size (int | tuple[int, int]): Attention window (``<= 0``: global).
        mlp_ratio (float): FFN expansion.
        drop_path (float): Stochastic depth rate of all three sub-layers.
        msra_cfg (dict): Other MSRA options (``mode``, ``weighted``, ``with_norm``, ``skip``,
            ``conv_groups``).
        gli_cfg (dict): Other GLI options (``split``, ``weighted``, ``ratio``, ``deform_groups``,
            ``qkv_bias``, ``drop``, ``attn_drop``, ``sampler``, ``dcn_impl``,
            ``layer_scale_init_value``).
        norm_cfg (dict): Norm layers.
        layer_scale_init_value (float): Initial layer scales.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int,
                 kernel_size: int,
                 dilations: Sequence[int],
                 op_names: Sequence[str],
                 dim_head: int,
                 window_size: WindowSize,
                 mlp_ratio: float,
                 drop_path: float = 0.,
                 drop: float = 0.,
                 msra_cfg: dict = dict(),
                 gli_cfg: dict = dict(),
                 norm_cfg: dict = dict(type='BN', eps=1e-6),
                 layer_scale_init_value: float = 1e-4):
        super().__init__()
        self.msra = MSRA(in_channels, out_channels, kernel_size, stride, dilations,
                         drop_path=drop_path, norm_cfg=norm_cfg, **msra_cfg)
        self.gli = GLI(out_channels, op_names, dim_head, window_size, drop=drop,
                       drop_path=drop_path, layer_scale_init_value=layer_scale_init_value,
                       norm_cfg=norm_cfg, **gli_cfg)
        self.ffn = ConvFFN(out_channels, mlp_ratio, drop, drop_path, layer_scale_init_value,
                           norm_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.gli(self.msra(x)))


def _arch(depths, embed_dims, dim_heads, op_names, **kwargs) -> dict:
    return dict(depths=depths, embed_dims=embed_dims, dim_heads=dim_heads, op_names=op_names,
                **kwargs)


_MDMSA = [['conv'], ['conv'], ['mdmsa', 'conv'], ['mdmsa', 'conv']]
_MSA = [['conv'], ['conv'], ['msa', 'conv'], ['msa', 'conv']]
_PATCH = dict(down_mode='patch', dilations=[[1], [1], [1, 2], [1]])


_WINDOW = integer() | sequence_of(integer(), length=2)
_PER_STAGE = {
    'depths': POSITIVE_INT,
    'embed_dims': POSITIVE_INT,
    'dim_heads': POSITIVE_INT,
    'op_names': sequence_of(one_of(*GLI_OPS)),
    'window_sizes': _WINDOW,
    'global_window_periods': integer(),
    'kernel_sizes': POSITIVE_INT,
    'dilations': sequence_of(POSITIVE_INT),
    'c_groups': integer(-1),
    'd_groups': POSITIVE_INT,
}


@MODELS.register_module()
class EATFormer(StagedBackbone):
    """EATFormer backbone.

    A paper-faithful port of `EATFormer <https://arxiv.org/abs/2206.09325>`_: a two-layer MSRA stem
    (stride 4), then four stages of :class:`EATBlock` (``FFN(GLI(MSRA(x)))``) at strides
    4/8/16/32. GLI mixes a convolution with windowed MSA or Modulated Deformable MSA (MD-MSA) in
    stages 3-4. Official checkpoints load after ``tools/model_converters/eatformer_to_mmevo.py``.

    Args:
        arch (str | dict): A name in :attr:`arch_zoo` (``'mobile'``/``'m'``, ``'lite'``/``'l'``,
            ``'tiny'``/``'t'``, ``'mini'``/``'mi'``, ``'small'``/``'s'``, ``'medium'``/``'me'``,
            ``'base'``/``'b'``) or a dict. A dict needs ``depths``, ``embed_dims``, ``dim_heads``
            and ``op_names`` (per stage) and may set any of :attr:`arch_defaults`:

            - ``window_sizes``: per stage, an int, ``[h, w]``, or ``<= 0`` for global attention.
            - ``global_window_periods``: per stage; ``p > 0`` makes blocks ``j % p == 0`` global
              (the official downstream ``global_pers``).
            - ``kernel_sizes``, ``dilations`` (per stage), ``down_mode`` (``'kernel'``: stride-2
              MSRA with the stage kernel; ``'patch'``: 2x2 stride-2 kernels, which needs input
              sides that are multiples of 32), ``msra_mode`` (``'sum'``/``'cat'``),
              ``msra_weight``, ``msra_norm``, ``msra_skip``, ``c_groups`` (per stage, -1:
              depth-wise).
            - ``d_groups`` (MD-MSA / DCN offset groups per stage), ``gli_split``,
              ``gli_weight``, ``gli_ratio``, ``qkv_bias``, ``mlp_ratio``.
            - ``drop_path_rate``: the published stochastic depth rate.

            Every value is checked against :attr:`arch_domains`.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (int | Sequence[int]): Stages whose outputs are returned. Defaults to ``-1``.
        drop_path_rate (float, optional): Overrides the arch's stochastic depth rate (linearly
            increased over all blocks); in ``[0, 1)``.
        drop_rate (float): Dropout in FFN and attention outputs. Defaults to 0.
        attn_drop_rate (float): Attention dropout. Defaults to 0.
        window_size (int | list, optional): Overrides ``window_sizes`` of all stages (an int,
            ``[h, w]``) or per stage (a list of 4). Downstream configs use 14.
        global_window_periods (Sequence[int], optional): Overrides the arch's periods.
        sampler (str): MD-MSA sampling: ``'auto'`` (default: mmcv's modulated deformable op on
            CUDA tensors when mmcv has CUDA ops, ``F.grid_sample`` otherwise, ~100x faster than
            mmcv's CPU kernel), ``'grid_sample'`` or ``'mmcv'``. All give the same result.
        dcn_impl (str): 'dcn' op implementation: ``'auto'``, ``'mmcv'`` or ``'torchvision'``.
        norm_cfg (dict): Norm layers (``SyncBN`` in multi-GPU downstream configs). Defaults to
            ``dict(type='BN', eps=1e-6)`` as in the official model.
        layer_scale_init_value (float): Initial layer scales. Defaults to 1e-4.
        frozen_stages (int): -1: none; 0: the stem; ``i``: the stem and stages ``0..i-1``
            (mmdet semantics). Defaults to -1.
        norm_eval (bool): Keep BN layers in eval mode while training. Defaults to False.
        with_cp (bool): Gradient checkpointing of the stem and of every block. Defaults to
            False.
        channels_last (bool): Compute on channels-last (NHWC-strided) maps: the same values,
            and oneDNN's convolutions, above all the depth-wise ones and their backward, are
            much faster that way on CPU (training steps ~1.4x). Defaults to True.
        out_channels_last (bool): Return the maps channels-last as computed instead of
            contiguous NCHW (saves one copy per output; only for consumers that accept strided
            maps, which mmcv's CPU RoIAlign and deformable ops do not). Defaults to False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')``
            loads strictly: missing or unexpected keys are an error.

    Examples:
        >>> import torch
        >>> from mmevo.models import EATFormer
        >>> model = EATFormer('tiny', out_indices=(0, 1, 2, 3)).eval()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 224, 224))]
        [(1, 64, 56, 56), (1, 128, 28, 28), (1, 192, 14, 14), (1, 256, 7, 7)]
    """
    num_stages = 4
    arch_defaults = dict(
        window_sizes=[7, 7, 7, 7],
        global_window_periods=[-1, -1, -1, -1],
        kernel_sizes=[3, 3, 3, 3],
        down_mode='kernel',
        dilations=[[1], [1], [1, 2, 3], [1, 2]],
        msra_mode='sum',
        msra_weight=True,
        msra_norm=True,
        msra_skip=True,
        c_groups=[-1, -1, -1, -1],
        d_groups=[2, 2, 2, 2],
        gli_split=True,
        gli_weight=True,
        gli_ratio=None,
        qkv_bias=True,
        mlp_ratio=4.,
        drop_path_rate=0.)
    arch_zoo = {
        **dict.fromkeys(['m', 'mobile'], _arch([1, 1, 4, 1], [48, 64, 160, 256],
                                               [16, 16, 20, 32], _MDMSA, mlp_ratio=2.5,
                                               drop_path_rate=0.03, **_PATCH)),
        **dict.fromkeys(['l', 'lite'], _arch([1, 2, 6, 1], [64, 128, 192, 256], [32] * 4,
                                             _MDMSA, mlp_ratio=3., drop_path_rate=0.03,
                                             **_PATCH)),
        **dict.fromkeys(['t', 'tiny'], _arch([2, 2, 6, 2], [64, 128, 192, 256], [32] * 4,
                                             _MDMSA, drop_path_rate=0.05)),
        **dict.fromkeys(['mi', 'mini'], _arch([2, 3, 8, 2], [64, 128, 256, 320], [32] * 4, _MSA,
                                              drop_path_rate=0.07)),
        **dict.fromkeys(['s', 'small'], _arch([3, 4, 12, 3], [64, 128, 320, 448], [32] * 4,
                                              _MDMSA, drop_path_rate=0.1)),
        **dict.fromkeys(['me', 'medium'], _arch([4, 5, 14, 4], [64, 160, 384, 512], [32] * 4,
                                                _MSA, drop_path_rate=0.2)),
        **dict.fromkeys(['b', 'base'], _arch([5, 6, 18, 5], [64, 160, 384, 512], [32] * 4, _MSA,
                                             drop_path_rate=0.25)),
    }
    essential_keys = ('depths', 'embed_dims', 'dim_heads', 'op_names')
    arch_domains = {
        **{key: (lambda item: lambda n: per_stage(item, n))(item)
           for key, item in _PER_STAGE.items()},
        'down_mode': one_of('kernel', 'patch'),
        'msra_mode': one_of(*MSRA_MODES),
        'msra_weight': BOOL,
        'msra_norm': BOOL,
        'msra_skip': BOOL,
        'gli_split': BOOL,
        'gli_weight': BOOL,
        'gli_ratio': Domain(lambda v: v is None, 'None') | real(0, 1, True, True),
        'qkv_bias': BOOL,
        'mlp_ratio': POSITIVE_REAL,
        'drop_path_rate': real(0, 1, high_open=True),
    }
    arg_domains = {
        'drop_rate': real(0, 1, high_open=True),
        'attn_drop_rate': real(0, 1, high_open=True),
        'sampler': one_of(*SAMPLERS),
        'dcn_impl': one_of(*DEFORM_CONV_IMPLS),
        'layer_scale_init_value': real(0, float('inf')),
        'norm_cfg': Domain(lambda v: isinstance(v, dict) and 'type' in v,
                           "a dict with a 'type' (mmcv norm config)"),
    }

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_path_rate: Optional[float] = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 window_size: Optional[Union[int, Sequence]] = None,
                 global_window_periods: Optional[Sequence[int]] = None,
                 sampler: str = 'auto',
                 dcn_impl: str = 'auto',
                 norm_cfg: dict = dict(type='BN', eps=1e-6),
                 layer_scale_init_value: float = 1e-4,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 channels_last: bool = True,
                 out_channels_last: bool = False,
                 init_cfg: Optional[Union[dict, list]] = None):
        windows = None
        if window_size is not None:
            windows = _per_stage_windows(window_size, self.num_stages)
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
            init_cfg=init_cfg,
            arch_overrides=dict(window_sizes=windows,
                                global_window_periods=global_window_periods))
        self.check_args(drop_rate=drop_rate, attn_drop_rate=attn_drop_rate, sampler=sampler,
                        dcn_impl=dcn_impl, layer_scale_init_value=layer_scale_init_value,
                        norm_cfg=norm_cfg)
        s = self.arch_settings
        self.depths = list(s['depths'])
        self.embed_dims = list(s['embed_dims'])
        if s['down_mode'] == 'patch':
            self.input_multiple = 32

        c0 = self.embed_dims[0]
        stem_cfg = dict(kernel_size=3, stride=2, dilations=[1], weighted=False, skip=False,
                        conv_groups=1, norm_cfg=norm_cfg)
        self.stem = nn.Sequential(
            MSRA(in_channels, c0 // 2, with_norm=False, **stem_cfg),
            MSRA(c0 // 2, c0, with_norm=True, **stem_cfg))

        msra_cfg = dict(mode=s['msra_mode'], weighted=s['msra_weight'],
                        with_norm=s['msra_norm'], skip=s['msra_skip'])
        dpr = self.drop_path_rates(sum(self.depths))
        self.stages = nn.ModuleList()
        in_dim, block_id = c0, 0
        for i, (depth, dim) in enumerate(zip(self.depths, self.embed_dims)):
            blocks = []
            for j in range(depth):
                stride = 2 if i > 0 and j == 0 else 1
                period = s['global_window_periods'][i]
                blocks.append(
                    EATBlock(
                        in_dim,
                        dim,
                        stride=stride,
                        kernel_size=2 if stride == 2 and s['down_mode'] == 'patch' else
                        s['kernel_sizes'][i],
                        dilations=s['dilations'][i],
                        op_names=s['op_names'][i],
                        dim_head=s['dim_heads'][i],
                        window_size=-1 if period > 0 and j % period == 0 else
                        s['window_sizes'][i],
                        mlp_ratio=s['mlp_ratio'],
                        drop_path=dpr[block_id],
                        drop=drop_rate,
                        msra_cfg=dict(msra_cfg, conv_groups=s['c_groups'][i]),
                        gli_cfg=dict(
                            split=s['gli_split'],
                            weighted=s['gli_weight'],
                            ratio=s['gli_ratio'],
                            deform_groups=s['d_groups'][i],
                            qkv_bias=s['qkv_bias'],
                            attn_drop=attn_drop_rate,
                            sampler=sampler,
                            dcn_impl=dcn_impl),
                        norm_cfg=norm_cfg,
                        layer_scale_init_value=layer_scale_init_value))
                in_dim, block_id = dim, block_id + 1
            self.stages.append(nn.Sequential(*blocks))
        self._post_build(self.embed_dims, [4, 8, 16, 32])

    @classmethod
    def check_arch_rules(cls, s: dict) -> None:
        name = cls.__name__
        if s['embed_dims'][0] % 2:
            raise ValueError(f"{name}: arch['embed_dims'][0] must be even (the stem halves "
                             f"it), got {s['embed_dims'][0]}")
        for i, (dim, dim_head, ops) in enumerate(zip(s['embed_dims'], s['dim_heads'],
                                                    s['op_names'])):
            if not ops:
                raise ValueError(f"{name}: arch['op_names'][{i}] is empty: each stage needs "
                                 f"at least one GLI op")
            split = s['gli_split'] and len(ops) > 1
            if split and not s['gli_ratio'] and dim % len(ops):
                raise ValueError(f"{name}: arch['embed_dims'][{i}]={dim} must split evenly "
                                 f"into its {len(ops)} GLI ops {ops}")
            op_dim = dim // len(ops) if split and not s['gli_ratio'] else dim
            if any(GLI_OPS[op] in ('msa', 'mdmsa') for op in ops) and op_dim % dim_head:
                raise ValueError(f"{name}: stage {i}: attention channels {op_dim} (of "
                                 f"embed_dims[{i}]={dim}) must be a multiple of "
                                 f"arch['dim_heads'][{i}]={dim_head}")
            if any(GLI_OPS[op] == 'mdmsa' for op in ops) and op_dim % s['d_groups'][i]:
                raise ValueError(f"{name}: stage {i}: MD-MSA channels {op_dim} must be a "
                                 f"multiple of arch['d_groups'][{i}]={s['d_groups'][i]}")

    def _multiple_reason(self) -> str:
        return " with down_mode='patch' (Mobile, Lite)"


def _per_stage_windows(window_size, num_stages: int) -> list:
    """An int or ``[h, w]`` for all stages, or a list of one entry per stage."""
    if isinstance(window_size, int) or (isinstance(window_size, (list, tuple))
                                        and len(window_size) == 2
                                        and all(isinstance(w, int) for w in window_size)):
        return [window_size] * num_stages
    return list(window_size)

# Copyright (c) mmevo contributors. All rights reserved.
"""EATFormer: `EATFormer: Improving Vision Transformer Inspired by Evolutionary Algorithm
<https://arxiv.org/abs/2206.09325>`_ (Zhang et al., IJCV 2024).

A re-implementation of the official model (``zhangzjn/EATFormer``), numerically equal to it with
converted weights (``tools/model_converters/eatformer_to_mmevo.py``), for classification and, with
the downstream settings of the official detection/segmentation backbone (``EAFormer``: window 14,
global-window periods, four outputs), for detection and segmentation.
"""
import copy
from typing import Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp

from mmevo.registry import MODELS
from ..layers import GLI, MSRA, ConvFFN
from ..layers.window import WindowSize
from .base_backbone import BaseBackbone


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
        with_cp (bool): Gradient checkpointing of the block.
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
                 layer_scale_init_value: float = 1e-4,
                 with_cp: bool = False):
        super().__init__()
        self.with_cp = with_cp
        self.msra = MSRA(in_channels, out_channels, kernel_size, stride, dilations,
                         drop_path=drop_path, norm_cfg=norm_cfg, **msra_cfg)
        self.gli = GLI(out_channels, op_names, dim_head, window_size, drop=drop,
                       drop_path=drop_path, layer_scale_init_value=layer_scale_init_value,
                       norm_cfg=norm_cfg, **gli_cfg)
        self.ffn = ConvFFN(out_channels, mlp_ratio, drop, drop_path, layer_scale_init_value,
                           norm_cfg)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.gli(self.msra(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


def _arch(depths, embed_dims, dim_heads, op_names, **kwargs) -> dict:
    return dict(depths=depths, embed_dims=embed_dims, dim_heads=dim_heads, op_names=op_names,
                **kwargs)


_MDMSA = [['conv'], ['conv'], ['mdmsa', 'conv'], ['mdmsa', 'conv']]
_MSA = [['conv'], ['conv'], ['msa', 'conv'], ['msa', 'conv']]
_PATCH = dict(down_mode='patch', dilations=[[1], [1], [1, 2], [1]])


@MODELS.register_module()
class EATFormer(BaseBackbone):
    """EATFormer backbone.

    A paper-faithful port of `EATFormer <https://arxiv.org/abs/2206.09325>`_: a two-layer MSRA stem
    (stride 4), then four stages of :class:`EATBlock` (``FFN(GLI(MSRA(x)))``) at strides
    4/8/16/32. GLI mixes a convolution with windowed MSA or Modulated Deformable MSA (MD-MSA) in
    stages 3-4. Maps are NCHW tensors (channels-last strided by default). Official checkpoints
    load after ``tools/model_converters/eatformer_to_mmevo.py``.

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
        in_channels (int): Input channels. Defaults to 3.
        out_indices (int | Sequence[int]): Stages whose outputs are returned. Defaults to ``-1``.
        drop_path_rate (float, optional): Overrides the arch's stochastic depth rate (linearly
            increased over all blocks).
        drop_rate (float): Dropout in FFN and attention outputs. Defaults to 0.
        attn_drop_rate (float): Attention dropout. Defaults to 0.
        window_size (int | list, optional): Overrides ``window_sizes`` of all stages (an int,
            ``[h, w]``) or per stage (a list of 4). Downstream configs use 14.
        global_window_periods (Sequence[int], optional): Overrides the arch's periods.
        sampler (str): MD-MSA sampling, ``'grid_sample'`` (default; fast on CPU) or ``'mmcv'``
            (``mmcv.ops.modulated_deform_conv2d``). Both give the same result.
        dcn_impl (str): 'dcn' op implementation: ``'auto'``, ``'mmcv'`` or ``'torchvision'``.
        norm_cfg (dict): Norm layers (``SyncBN`` in multi-GPU downstream configs). Defaults to
            ``dict(type='BN', eps=1e-6)`` as in the official model.
        layer_scale_init_value (float): Initial layer scales. Defaults to 1e-4.
        frozen_stages (int): -1: none; 0: the stem; ``i``: the stem and stages ``0..i-1``
            (mmdet semantics). Defaults to -1.
        norm_eval (bool): Keep BN layers in eval mode while training. Defaults to False.
        with_cp (bool): Gradient checkpointing of the stem and of every block. Defaults to
            False.
        channels_last (bool): Run on channels-last (NHWC-strided) maps: the same values, and
            oneDNN's convolutions, above all the depth-wise ones and their backward, are much
            faster that way on CPU (training steps ~1.4x). The outputs are then channels-last
            tensors, which every OpenMMLab neck and head accepts. Defaults to True.
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

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_path_rate: Optional[float] = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 window_size: Optional[Union[int, Sequence]] = None,
                 global_window_periods: Optional[Sequence[int]] = None,
                 sampler: str = 'grid_sample',
                 dcn_impl: str = 'auto',
                 norm_cfg: dict = dict(type='BN', eps=1e-6),
                 layer_scale_init_value: float = 1e-4,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 channels_last: bool = True,
                 init_cfg: Optional[Union[dict, list]] = None):
        super().__init__(init_cfg=init_cfg)
        self.arch_settings = self.parse_arch(arch)
        s = self.arch_settings
        if window_size is not None:
            s['window_sizes'] = self._per_stage_windows(window_size)
        if global_window_periods is not None:
            s['global_window_periods'] = list(global_window_periods)
        self._check_per_stage(s)
        if drop_path_rate is None:
            drop_path_rate = s['drop_path_rate']
        if s['down_mode'] not in ('kernel', 'patch'):
            raise ValueError(f"down_mode must be 'kernel' or 'patch', got {s['down_mode']!r}")

        self.in_channels = in_channels
        self.depths = list(s['depths'])
        self.embed_dims = list(s['embed_dims'])
        self.out_indices = self._normalize_indices(out_indices, self.num_stages)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.channels_last = channels_last

        c0 = self.embed_dims[0]
        stem_cfg = dict(kernel_size=3, stride=2, dilations=[1], weighted=False, skip=False,
                        conv_groups=1, norm_cfg=norm_cfg)
        self.stem = nn.Sequential(
            MSRA(in_channels, c0 // 2, with_norm=False, **stem_cfg),
            MSRA(c0 // 2, c0, with_norm=True, **stem_cfg))

        msra_cfg = dict(mode=s['msra_mode'], weighted=s['msra_weight'],
                        with_norm=s['msra_norm'], skip=s['msra_skip'])
        dpr = torch.linspace(0, drop_path_rate, sum(self.depths)).tolist()
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
                        layer_scale_init_value=layer_scale_init_value,
                        with_cp=with_cp))
                in_dim, block_id = dim, block_id + 1
            self.stages.append(nn.Sequential(*blocks))
        self.fused = False
        self._freeze_stages()
        self._set_memory_format()

    def _set_memory_format(self) -> None:
        # Weights in the layout of the maps: oneDNN then needs no reorder per call (in-place
        # optimizer updates and load_state_dict keep the layout).
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    @classmethod
    def parse_arch(cls, arch: Union[str, dict]) -> dict:
        """Resolve ``arch`` into a full settings dict (a copy)."""
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                raise ValueError(f'Arch {arch!r} is not in default archs of {cls.__name__}: '
                                 f'{sorted(cls.arch_zoo)}')
            arch = cls.arch_zoo[key]
        elif not isinstance(arch, dict):
            raise TypeError(f'arch must be a str or a dict, got {type(arch).__name__}')
        missing = [k for k in cls.essential_keys if k not in arch]
        if missing:
            raise ValueError(f'Custom arch needs a dict with keys {list(cls.essential_keys)}; '
                             f'missing {missing}')
        unknown = set(arch) - set(cls.essential_keys) - set(cls.arch_defaults)
        if unknown:
            raise ValueError(f'Unknown arch keys {sorted(unknown)}; allowed: '
                             f'{list(cls.essential_keys) + sorted(cls.arch_defaults)}')
        return copy.deepcopy({**cls.arch_defaults, **arch})

    def _per_stage_windows(self, window_size) -> list:
        if isinstance(window_size, int) or (len(window_size) == 2 and all(
                isinstance(w, int) for w in window_size)):
            return [window_size] * self.num_stages
        return list(window_size)

    def _check_per_stage(self, s: dict) -> None:
        for key in ('depths', 'embed_dims', 'dim_heads', 'op_names', 'window_sizes',
                    'global_window_periods', 'kernel_sizes', 'dilations', 'c_groups',
                    'd_groups'):
            if len(s[key]) != self.num_stages:
                raise ValueError(f'arch {key!r} needs one entry per stage ({self.num_stages}), '
                                 f'got {s[key]!r}')
        if any(d % 2 for d in s['embed_dims'][:1]):
            raise ValueError(f"embed_dims[0] must be even (the stem halves it), got "
                             f"{s['embed_dims'][0]}")

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self._freeze(self.stem)
        for i in range(min(self.frozen_stages, self.num_stages)):
            self._freeze(self.stages[i])

    @property
    def min_input_size(self) -> int:
        return 32

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4:
            raise ValueError(f'EATFormer expects an NCHW batch, got a tensor of shape '
                             f'{tuple(x.shape)}')
        if x.shape[1] != self.in_channels:
            raise ValueError(f'EATFormer was built for in_channels={self.in_channels} but the '
                             f'input has {x.shape[1]} channels (shape {tuple(x.shape)})')
        h, w = x.shape[-2:]
        if h < self.min_input_size or w < self.min_input_size:
            raise ValueError(f'input {h}x{w} is too small for EATFormer: both sides must be at '
                             f'least {self.min_input_size} (its total stride)')
        if self.arch_settings['down_mode'] == 'patch' and (h % 32 or w % 32):
            raise ValueError(f"EATFormer with down_mode='patch' (Mobile, Lite) needs input sides "
                             f'that are multiples of 32, got {h}x{w}; resize or pad the input')

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self._check_input(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.with_cp and torch.is_grad_enabled() and self.stem[0].proj.weight.requires_grad:
            x = cp.checkpoint(self.stem, x, use_reentrant=False)
        else:
            x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
            if i == self.out_indices[-1]:
                break
        return tuple(outs)

    @torch.no_grad()
    def fuse(self) -> 'EATFormer':
        """Fold BatchNorms, layer scales and GLI op weights into convolutions, for inference.

        Exact up to float rounding (the parity tests run the fused model too); removes about
        two thirds of the BatchNorm and scaling passes. Only BatchNorms next to an unpadded
        1x1 convolution or after a convolution are folded: the pre-norms of MSRA and GLI
        precede zero-padded convolutions / windows, where folding would not be exact. The model
        should not be trained afterwards.
        """
        self.eval()
        for block in (blk for stage in self.stages for blk in stage):
            block.msra.fuse()
            block.gli.fuse()
            block.ffn.fuse()
        self._set_memory_format()
        self.fused = True
        return self

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """Layer id of a parameter for layer-wise learning-rate decay.

        The stem is layer 0, block ``k`` (counted over all stages) is layer ``k + 1`` and
        everything outside the backbone (heads) is the last layer.

        Returns:
            tuple[int, int]: ``(layer_id, num_layers)``.
        """
        num_layers = sum(self.depths) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        name = param_name[len(prefix):]
        if name.startswith('stem'):
            return 0, num_layers
        if name.startswith('stages.'):
            stage, block = (int(p) for p in name.split('.')[1:3])
            return sum(self.depths[:stage]) + block + 1, num_layers
        return num_layers - 1, num_layers

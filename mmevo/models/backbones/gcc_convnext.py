# Copyright (c) mmevo contributors. All rights reserved.
"""ParC-ConvNeXt ("GCC-ConvNeXt") of `ParC-Net <https://arxiv.org/abs/2203.03952>`_ (Zhang et al.,
ECCV 2022): ConvNeXt whose last blocks of stages 3 and 4 replace the 7x7 depth-wise convolution
by position-aware global circular convolutions (official ``ParC_ConvNets/ParC_convnext.py`` of
``hkzhang91/ParC-Net``; the authors released no weights).
"""
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath

from mmevo.registry import MODELS
from mmevo.utils.validation import BOOL, POSITIVE_INT, Domain, integer, per_stage, real
from ..layers.gcc import AxialPositionEmbedding, GlobalCircularConv
from ..layers.norm import LayerNorm2d
from .base_backbone import StagedBackbone


class ParC(nn.Module):
    """Position-aware circular convolution along one axis: ``GCC(x + PE)`` with a fixed-length
    kernel (with bias) and position embedding.

    Args:
        channels (int): Channels.
        axis (str): ``'H'`` or ``'W'``.
        kernel_size (int): Kernel and embedding length (the stage's map size at 224x224).
        resize (bool): At another map length, resize kernel and embedding to it (bilinear,
            ``align_corners=True``); False: require ``kernel_size``.
    """

    def __init__(self, channels: int, axis: str, kernel_size: int, resize: bool = True):
        super().__init__()
        self.pe = AxialPositionEmbedding(channels, axis, kernel_size, resize, init_std=.02)
        self.gcc = GlobalCircularConv(channels, axis, kernel_size, bias=True, resize=resize)
        nn.init.trunc_normal_(self.gcc.weight, std=.02)
        nn.init.zeros_(self.gcc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gcc(self.pe(x))


class ConvNeXtBlock(nn.Module):
    """A ConvNeXt block, ``x + drop_path(gamma * fc2(GELU(fc1(LN(mixer(x))))))``, whose token
    mixer is a 7x7 depth-wise convolution, or, with ``gcc_kernel_size``, a ParC operator along H on
    the first half of the channels and along W on the second half.

    Args:
        dim (int): Channels.
        gcc_kernel_size (int, optional): Use the ParC mixer with this kernel length.
        resize (bool): Resize the ParC kernels to other map sizes. Defaults to True.
        drop_path (float): Stochastic depth rate. Defaults to 0.
        layer_scale_init_value (float): Initial ``gamma``. Defaults to 1e-6.
    """

    def __init__(self,
                 dim: int,
                 gcc_kernel_size: Optional[int] = None,
                 resize: bool = True,
                 drop_path: float = 0.,
                 layer_scale_init_value: float = 1e-6):
        super().__init__()
        if gcc_kernel_size is None:
            self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
            self.gcc_h = self.gcc_w = None
        else:
            self.dwconv = None
            self.split = (dim // 2, dim - dim // 2)
            self.gcc_h = ParC(self.split[0], 'H', gcc_kernel_size, resize)
            self.gcc_w = ParC(self.split[1], 'W', gcc_kernel_size, resize)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim, ), layer_scale_init_value)) \
            if layer_scale_init_value > 0 else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def mixer(self, x: torch.Tensor) -> torch.Tensor:
        if self.dwconv is not None:
            return self.dwconv(x)
        x_h, x_w = x.split(self.split, dim=1)
        return torch.cat((self.gcc_h(x_h), self.gcc_w(x_w)), dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mixer(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        if self.gamma is not None:
            y = y * self.gamma
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class Downsample(nn.Sequential):
    """``conv(pad(norm(x)))``: LayerNorm, zero padding right/bottom to a multiple of the
    stride (none for multiples of 32 at the input), strided convolution."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm_first: bool):
        conv = nn.Conv2d(in_channels, out_channels, stride, stride)
        norm = LayerNorm2d(in_channels if norm_first else out_channels, eps=1e-6)
        super().__init__(*((norm, conv) if norm_first else (conv, norm)))
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, nn.Conv2d):
                h, w = x.shape[-2:]
                x = F.pad(x, (0, -w % self.stride, 0, -h % self.stride))
            x = layer(x)
        return x


@MODELS.register_module()
class GCCConvNeXt(StagedBackbone):
    """ParC-ConvNeXt (GCC-ConvNeXt) backbone.

    A port of ParC-ConvNeXt-XT from `ParC-Net <https://arxiv.org/abs/2203.03952>`_: ConvNeXt
    (stem 4x4/4 + LN, LN + 2x2/2 down-sampling, LN/MLP blocks with layer scale) where the blocks
    from index ``gcc_start[i]`` of stage ``i`` on replace the 7x7 depth-wise convolution by ParC
    operators (position embedding + global circular convolution with bias, H on the first half of
    the channels, W on the second). The authors released no weights.

    **Input sizes.** The ParC kernels and embeddings have fixed lengths, the stage map sizes at
    224x224 (``gcc_kernel_sizes`` 56/28/14/7); the official model accepts only inputs giving
    exactly those sizes. Here, at other sizes, each kernel and embedding is resized (bilinear,
    ``align_corners=True``, as EdgeFormer does with its meta kernels) to the map's length along
    its axis; ``resize_kernels=False`` keeps the official behaviour and raises a clear error.
    Sides that are not multiples of 32 are zero-padded right/bottom before each strided
    convolution (outputs ``ceil(size / stride)``).

    Args:
        arch (str | dict): ``'xt'``/``'extra_tiny'`` (ParC-ConvNeXt-XT: channels 48/96/192/384,
            depths 3/3/9/3, ParC from blocks 3/3/6/2), or a dict with ``channels``, ``depths``
            and optional ``gcc_start`` (per stage, blocks from this index use ParC; ``>=
            depth``: none) and ``gcc_kernel_sizes``.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (int | Sequence[int]): Stages returned. Defaults to -1.
        drop_path_rate (float, optional): Stochastic depth. Defaults to 0.
        layer_scale_init_value (float): Initial layer scales. Defaults to 1e-6.
        resize_kernels (bool): See *Input sizes*. Defaults to True.
        out_norms (bool): A LayerNorm on every returned map (ConvNeXt's convention; the last is
            the official final norm). Defaults to True.
        gap_before_final_norm (bool): Average-pool each returned map before its norm (returns
            ``(N, C, 1, 1)`` maps; the official classifier: ``LN(mean_hw(x))``). Defaults to
            False.
        frozen_stages, norm_eval, with_cp, channels_last, out_channels_last, init_cfg: see
            :class:`~mmevo.models.backbones.StagedBackbone`. ``init_cfg`` defaults to the
            official initialisation (truncated normal, std 0.02).
    """
    num_stages = 4
    arch_defaults = dict(gcc_start=[3, 3, 6, 2], gcc_kernel_sizes=[56, 28, 14, 7],
                         drop_path_rate=0.)
    arch_zoo = {
        **dict.fromkeys(['xt', 'extra_tiny'],
                        dict(channels=[48, 96, 192, 384], depths=[3, 3, 9, 3])),
    }
    essential_keys = ('channels', 'depths')
    arch_domains = {
        'channels': lambda n: per_stage(Domain(lambda v: isinstance(v, int) and v >= 2,
                                               'an int >= 2'), n),
        'depths': lambda n: per_stage(POSITIVE_INT, n),
        'gcc_start': lambda n: per_stage(integer(0), n),
        'gcc_kernel_sizes': lambda n: per_stage(POSITIVE_INT, n),
        'drop_path_rate': real(0, 1, high_open=True),
    }
    arg_domains = {
        'layer_scale_init_value': real(0, float('inf')),
        'resize_kernels': BOOL,
        'out_norms': BOOL,
        'gap_before_final_norm': BOOL,
    }

    def __init__(self,
                 arch: Union[str, dict] = 'xt',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_path_rate: Optional[float] = None,
                 layer_scale_init_value: float = 1e-6,
                 resize_kernels: bool = True,
                 out_norms: bool = True,
                 gap_before_final_norm: bool = False,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 channels_last: bool = False,
                 out_channels_last: bool = False,
                 init_cfg: Optional[Union[dict, list]] = dict(
                     type='TruncNormal', layer=['Conv2d', 'Linear'], std=.02, bias=0.)):
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
        self.check_args(layer_scale_init_value=layer_scale_init_value,
                        resize_kernels=resize_kernels, out_norms=out_norms,
                        gap_before_final_norm=gap_before_final_norm)
        s = self.arch_settings
        dims, depths = s['channels'], s['depths']
        self.gap_before_final_norm = gap_before_final_norm
        self.stem = Downsample(in_channels, dims[0], 4, norm_first=False)
        dpr = iter(self.drop_path_rates(sum(depths)))
        self.stages = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(dims, depths)):
            layers = [Downsample(dims[i - 1], dim, 2, norm_first=True)] if i > 0 else []
            layers += [
                ConvNeXtBlock(
                    dim,
                    s['gcc_kernel_sizes'][i] if j >= s['gcc_start'][i] else None,
                    resize_kernels,
                    drop_path=next(dpr),
                    layer_scale_init_value=layer_scale_init_value) for j in range(depth)
            ]
            self.stages.append(nn.Sequential(*layers))
        if out_norms:
            self.out_norms = nn.ModuleList(LayerNorm2d(dims[i], eps=1e-6)
                                           for i in self.out_indices)
        elif gap_before_final_norm:
            raise ValueError('GCCConvNeXt: gap_before_final_norm=True needs out_norms=True (the '
                             'pooled map is normalised)')
        self._post_build(dims, [4, 8, 16, 32])

    def stage_output(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True) if self.gap_before_final_norm else x

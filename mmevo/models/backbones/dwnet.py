# Copyright (c) mmevo contributors. All rights reserved.
"""DWNet and dynamic DWNet: `On the Connection between Local Attention and Dynamic Depth-wise
Convolution <https://arxiv.org/abs/2106.04263>`_ (Han et al., ICLR 2022).

The Swin Transformer skeleton with every window attention replaced by a depth-wise convolution
block: static kernels (DWNet), kernels predicted per sample from the pooled input (dynamic
DWNet), or per sample and position (i-dynamic DWNet). A re-implementation of the official models
(``Atten4Vis/DemystifyLocalViT``), numerically equal to them with converted weights
(``tools/model_converters/dwnet_to_mmevo.py``): the classification model and, with
``pad_to_window=True`` and SyncBN output norms, the official detection/segmentation backbone.

The official code works on token sequences and flips to maps around every convolution; this one
works on NCHW maps throughout (BatchNorm pre-norms and 1x1 convolutions are natural there), with
the token operations (LayerNorm, patch merging) done on channels-last views.
"""
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn.bricks import DropPath
from mmengine.logging import print_log

from mmevo.registry import MODELS
from mmevo.utils.validation import (
    BOOL,
    POSITIVE_INT,
    POSITIVE_REAL,
    Domain,
    per_stage,
    real,
)
from ..layers.depthwise import dwconv
from ..layers.dynamic_conv import DynamicDWConv2d, InhomogeneousDWConv2d, per_sample_dwconv2d
from ..layers.fast_path import fast_route, foldable_norm, fused_inference
from ..layers.ffn import ConvFFN
from ..layers.folding import bn_affine
from ..layers.inference_conv import conv_bn_act
from ..layers.norm import build_norm
from ..layers.residual import add_residual
from .base_backbone import StagedBackbone


class PatchEmbed(nn.Module):
    """Non-overlapping ``patch_size`` patches: a strided convolution and a LayerNorm over the
    channels. Inputs whose sides are not multiples of the patch are zero-padded on the right
    and bottom (as the official downstream backbone does)."""

    def __init__(self, in_channels: int, embed_dims: int, patch_size: int = 4, drop: float = 0.):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, embed_dims, patch_size, patch_size)
        self.norm = build_norm(dict(type='LN2d', eps=1e-5), embed_dims)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.patch_size
        pad_h, pad_w = -x.shape[2] % p, -x.shape[3] % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.drop(self.norm(self.proj(x)))


class PatchMerging(nn.Module):
    """Swin's patch merging on an NCHW map: the four 2x2 sub-grids concatenated along the
    channels (order (0, 0), (1, 0), (0, 1), (1, 1) as (row, column) offsets), LayerNorm(4C),
    then a linear map to 2C without bias. Odd sides are zero-padded on the right / bottom."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim, eps=1e-5)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        if H % 2 or W % 2:
            x = F.pad(x, (0, W % 2, 0, H % 2))
        h, w = x.shape[2] // 2, x.shape[3] // 2
        # (B, h, dy, w, dx, C) -> (B, h, w, dx, dy, C): the official concatenation order
        x = x.permute(0, 2, 3, 1).reshape(B, h, 2, w, 2, C).permute(0, 1, 3, 4, 2, 5)
        x = self.reduction(self.norm(x.reshape(B, h, w, 4 * C)))
        return x.permute(0, 3, 1, 2)


#: The depth-wise convolutions of :class:`DWBlock`: static, dynamic, inhomogeneous dynamic.
KERNEL_MODES = ('static', 'dynamic', 'inhomogeneous')


class DWBlock(nn.Module):
    """The depth-wise block that replaces window attention.

    ``BN(conv2(ReLU(BN(K(ReLU(BN(conv0(x))))))))`` with 1x1 convolutions ``conv0``, ``conv2``
    (no bias) and a ``k x k`` depth-wise convolution ``K`` (zero padding ``k // 2``): static
    (with bias), :class:`~mmevo.models.layers.DynamicDWConv2d` or
    :class:`~mmevo.models.layers.InhomogeneousDWConv2d`.

    Args:
        dim (int): Channels.
        kernel_size (int): ``k`` (the official ``window_size``).
        mode (str): One of :data:`KERNEL_MODES`. Defaults to ``'static'``.
        group_channels (int, optional): Channels sharing a kernel (``'inhomogeneous'`` only).
        norm_cfg (dict): BatchNorm layers. Defaults to ``dict(type='BN')``.
    """

    def __init__(self,
                 dim: int,
                 kernel_size: int,
                 mode: str = 'static',
                 group_channels: Optional[int] = None,
                 norm_cfg: dict = dict(type='BN')):
        super().__init__()
        self.mode = mode
        self.conv0 = nn.Conv2d(dim, dim, 1, bias=False)
        self.bn0 = build_norm(norm_cfg, dim)
        if mode == 'static':
            self.conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        elif mode == 'dynamic':
            self.conv = DynamicDWConv2d(dim, kernel_size, norm_cfg=norm_cfg)
        else:
            self.conv = InhomogeneousDWConv2d(dim, kernel_size, group_channels, norm_cfg=norm_cfg)
        self.bn = build_norm(norm_cfg, dim)
        self.conv2 = nn.Conv2d(dim, dim, 1, bias=False)
        self.bn2 = build_norm(norm_cfg, dim)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor,
                residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The block on ``x``, plus ``residual`` when given."""
        if fast_route(self, x):
            return self.forward_fast(x, residual)
        x = self.act(self.bn0(self.conv0(x)))
        x = self.act(self.bn(self.conv(x)))
        x = self.bn2(self.conv2(x))
        return x if residual is None else residual + x

    def forward_fast(self, x: torch.Tensor,
                     residual: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Inference: every BatchNorm folded into the convolution before it (per-sample kernels
        scaled by theirs), ReLU as a oneDNN post-op, the residual added in place. Training: the
        static depth-wise convolution's backward as forward convolutions
        (:func:`~mmevo.models.layers.dwconv`; the dynamic one has it built in)."""
        if fused_inference(x):
            x = conv_bn_act(x, self.conv0, self.bn0, 'relu')
            if self.mode == 'static':
                x = conv_bn_act(x, self.conv, self.bn, 'relu')
            elif self.mode == 'dynamic' and foldable_norm(self.bn):
                scale, shift = bn_affine(self.bn)
                kernels = self.conv.kernels(x) * scale.view(1, -1, 1, 1)
                bias = shift if self.conv.bias is None else self.conv.bias * scale + shift
                x = per_sample_dwconv2d(x, kernels, bias, padding=self.conv.kernel_size // 2,
                                        act='relu')
            else:
                x = self.act(self.bn(self.conv(x)))
            return conv_bn_act(x, self.conv2, self.bn2, residual=residual)
        x = self.act(self.bn0(self.conv0(x)))
        x = self.act(self.bn(dwconv(x, self.conv) if self.mode == 'static' else self.conv(x)))
        x = self.bn2(self.conv2(x))
        return x if residual is None else residual + x


class DWNetBlock(nn.Module):
    """One DWNet block: ``x + DWBlock(x)``, then a BatchNorm pre-norm FFN with a residual.

    Args:
        dim (int): Channels.
        kernel_size (int): Depth-wise kernel (the official ``window_size``).
        mode (str): Depth-wise kernels, one of :data:`KERNEL_MODES`.
        group_channels (int, optional): Channels per kernel of the ``'inhomogeneous'`` mode.
        mlp_ratio (float): FFN expansion. Defaults to 4.
        drop (float): FFN dropout. Defaults to 0.
        drop_path (float): Stochastic depth of both residual branches. Defaults to 0.
        pad_to_window (bool): Zero-pad the map on the right / bottom to a multiple of
            ``kernel_size`` before :class:`DWBlock` and crop after (official downstream
            backbone). Defaults to False.
        norm_cfg (dict): BatchNorm layers. Defaults to ``dict(type='BN')``.
    """

    def __init__(self,
                 dim: int,
                 kernel_size: int,
                 mode: str = 'static',
                 group_channels: Optional[int] = None,
                 mlp_ratio: float = 4.,
                 drop: float = 0.,
                 drop_path: float = 0.,
                 pad_to_window: bool = False,
                 norm_cfg: dict = dict(type='BN')):
        super().__init__()
        self.kernel_size = kernel_size
        self.pad_to_window = pad_to_window
        self.dw = DWBlock(dim, kernel_size, mode, group_channels, norm_cfg)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.ffn = ConvFFN(dim, mlp_ratio, drop, drop_path, None, norm_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[2:]
        k = self.kernel_size
        pad_h, pad_w = (-H % k, -W % k) if self.pad_to_window else (0, 0)
        if pad_h or pad_w:
            x = add_residual(x, self.dw(F.pad(x, (0, pad_w, 0, pad_h)))[:, :, :H, :W],
                             self.drop_path)
        elif self.drop_path.training and getattr(self.drop_path, 'drop_prob', 0) > 0:
            x = add_residual(x, self.dw(x), self.drop_path)
        else:
            x = self.dw(x, residual=x)
        return self.ffn(x)


_ODD = Domain(lambda v: v in POSITIVE_INT and v % 2 == 1, 'a positive odd int')
_NORM_CFG = Domain(lambda v: isinstance(v, dict) and 'type' in v,
                   "a dict with a 'type' (mmcv norm config)")


@MODELS.register_module()
class DWNet(StagedBackbone):
    """DWNet / dynamic DWNet backbone.

    A port of `DWNet <https://arxiv.org/abs/2106.04263>`_: a 4x4 patch embedding, then four
    stages of :class:`DWNetBlock` at strides 4/8/16/32 with ``embed_dims * 2**i`` channels,
    stages 2-4 starting with Swin's patch merging. Stage outputs are the maps before the next
    merging (what the official downstream backbone returns).

    The classification model's final LayerNorm, pooling and classifier are
    :class:`~mmevo.models.heads.DWNetClsHead`. Official checkpoints (classification, and
    detection / segmentation backbones) load after ``tools/model_converters/dwnet_to_mmevo.py``.

    Args:
        arch (str | dict): ``'tiny'``/``'t'`` or ``'base'``/``'b'``, or a dict with
            ``embed_dims`` (int, stage-1 channels) and ``depths`` (4 ints) and optionally
            ``window_size`` (odd depth-wise kernel size; default 7), ``mlp_ratio`` (default 4),
            ``inhomo_heads`` (4 ints: channels sharing one kernel per stage in the
            ``inhomogeneous`` mode; official ``inhomo_heads``) and ``drop_path_rate`` (the
            published rate; default 0). Values are checked against :attr:`arch_domains`.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (int | Sequence[int]): Stages whose outputs are returned. Defaults to -1.
        drop_path_rate (float, optional): Overrides the arch's stochastic depth rate (linearly
            increased over all blocks).
        drop_rate (float): Dropout after the patch embedding and in the FFNs. Defaults to 0.
        dynamic (bool): Dynamic DWNet: per-sample depth-wise kernels generated from the pooled
            input (:class:`~mmevo.models.layers.DynamicDWConv2d`). Their generator's BatchNorm
            needs batches of at least 2 in training. Defaults to False. (The official code at
            its latest commit silently builds the static model for ``dynamic=True``; this is
            the working model of its first commit, which the released checkpoints need.)
        inhomogeneous (bool): With ``dynamic``: i-dynamic DWNet, kernels per sample *and*
            position shared by ``inhomo_heads[i]`` channels (the official CUDA-only variant;
            here an ``F.unfold`` implementation for any device). Defaults to False.
        pad_to_window (bool): Reproduce the official detection / segmentation backbone: every
            block zero-pads its map on the right / bottom to a multiple of ``window_size``
            before the depth-wise block and crops after. The padded zeros pass the first 1x1
            convolution, BatchNorm and ReLU and become non-zero, so outputs within
            ``window_size // 2`` of the right / bottom border differ from the plain 'same'
            convolution, and dynamic kernels pool over the padded map. Needed to reproduce
            official downstream checkpoints (the mmevo detection / segmentation configs set it);
            default False: the paper's and the classification model's computation.
        norm_cfg (dict): The BatchNorm layers (``SyncBN`` in the downstream configs). Defaults
            to ``dict(type='BN')`` (eps 1e-5, as the official model).
        out_norm_cfg (dict, optional): A norm applied to every returned map; the official
            downstream backbone uses ``dict(type='SyncBN')`` (its ``norm0..3``). A classification
            checkpoint has no output norms: loading one leaves them at their initialisation
            (as the official downstream loader does). Defaults to None (no output norm).
        frozen_stages (int): -1: none; 0: the stem; ``i``: the stem and stages ``0..i-1``
            (with their patch merging and output norms). Defaults to -1.
        norm_eval (bool): Keep BN layers in eval mode while training. Defaults to False.
        with_cp (bool): Gradient checkpointing of the stem and of every block. Defaults to
            False.
        channels_last (bool): Compute on channels-last maps (the layout of the LayerNorms and
            patch merging, and the faster one for oneDNN's convolutions). Defaults to True.
        out_channels_last (bool): Return channels-last maps instead of contiguous NCHW.
            Defaults to False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')``
            loads strictly (apart from the output norms, see ``out_norm_cfg``). Without it, the
            official initialisation: truncated normal (std 0.02) FFN and merging weights, zero
            biases.

    Examples:
        >>> import torch
        >>> from mmevo.models import DWNet
        >>> model = DWNet('tiny', dynamic=True, out_indices=(0, 1, 2, 3)).eval()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 224, 224))]
        [(1, 96, 56, 56), (1, 192, 28, 28), (1, 384, 14, 14), (1, 768, 7, 7)]
    """
    num_stages = 4
    arch_zoo = {
        **dict.fromkeys(['t', 'tiny'], dict(embed_dims=96, depths=[2, 2, 6, 2],
                                            inhomo_heads=[3, 6, 12, 24], drop_path_rate=0.2)),
        **dict.fromkeys(['b', 'base'], dict(embed_dims=128, depths=[2, 2, 18, 2],
                                            inhomo_heads=[4, 8, 16, 32], drop_path_rate=0.5)),
    }
    essential_keys = ('embed_dims', 'depths')
    arch_defaults = dict(window_size=7, mlp_ratio=4., inhomo_heads=None, drop_path_rate=0.)
    arch_domains = {
        'embed_dims': POSITIVE_INT,
        'depths': lambda n: per_stage(POSITIVE_INT, n),
        'window_size': _ODD,
        'mlp_ratio': POSITIVE_REAL,
        'inhomo_heads': lambda n: Domain(lambda v: v is None, 'None') | per_stage(
            POSITIVE_INT, n),
        'drop_path_rate': real(0, 1, high_open=True),
    }
    arg_domains = {
        'drop_rate': real(0, 1, high_open=True),
        'dynamic': BOOL,
        'inhomogeneous': BOOL,
        'pad_to_window': BOOL,
        'norm_cfg': _NORM_CFG,
        'out_norm_cfg': Domain(lambda v: v is None, 'None') | _NORM_CFG,
    }

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_path_rate: Optional[float] = None,
                 drop_rate: float = 0.,
                 dynamic: bool = False,
                 inhomogeneous: bool = False,
                 pad_to_window: bool = False,
                 norm_cfg: dict = dict(type='BN'),
                 out_norm_cfg: Optional[dict] = None,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 channels_last: bool = True,
                 out_channels_last: bool = False,
                 init_cfg: Optional[Union[dict, list]] = None):
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
        self.check_args(drop_rate=drop_rate, dynamic=dynamic, inhomogeneous=inhomogeneous,
                        pad_to_window=pad_to_window, norm_cfg=norm_cfg, out_norm_cfg=out_norm_cfg)
        s = self.arch_settings
        dims = [s['embed_dims'] * 2**i for i in range(self.num_stages)]
        self.mode = self._kernel_mode(s, dims, dynamic, inhomogeneous)
        self.dynamic, self.inhomogeneous = dynamic, inhomogeneous
        self.pad_to_window = pad_to_window
        self.depths = list(s['depths'])
        self.embed_dims = dims

        self.stem = PatchEmbed(in_channels, dims[0], drop=drop_rate)
        dpr = self.drop_path_rates(sum(self.depths))
        self.stages = nn.ModuleList()
        for i, (depth, dim) in enumerate(zip(self.depths, dims)):
            layers = [PatchMerging(dims[i - 1])] if i > 0 else []
            for j in range(depth):
                layers.append(
                    DWNetBlock(
                        dim,
                        s['window_size'],
                        self.mode,
                        group_channels=s['inhomo_heads'][i] if s['inhomo_heads'] else None,
                        mlp_ratio=s['mlp_ratio'],
                        drop=drop_rate,
                        drop_path=dpr[sum(self.depths[:i]) + j],
                        pad_to_window=pad_to_window,
                        norm_cfg=norm_cfg))
            self.stages.append(nn.Sequential(*layers))
        if out_norm_cfg is not None:
            self.out_norms = nn.ModuleList(
                build_norm(out_norm_cfg, dims[i]) for i in self.out_indices)
        self._post_build(dims, [4, 8, 16, 32])

    def _kernel_mode(self, s: dict, dims: Sequence[int], dynamic: bool,
                     inhomogeneous: bool) -> str:
        name = type(self).__name__
        if inhomogeneous and not dynamic:
            raise ValueError(f'{name}: inhomogeneous=True needs dynamic=True (i-dynamic DWNet '
                             f'is a dynamic model)')
        if dynamic and dims[0] < 4:
            raise ValueError(f"{name}: dynamic kernels need arch['embed_dims'] >= 4 (the "
                             f"kernel generator has embed_dims // 4 channels), got {dims[0]}")
        if not inhomogeneous:
            return 'dynamic' if dynamic else 'static'
        heads = s['inhomo_heads']
        if heads is None:
            raise ValueError(f"{name}: inhomogeneous=True needs arch['inhomo_heads'] (channels "
                             f"sharing one kernel, per stage)")
        for i, (dim, h) in enumerate(zip(dims, heads)):
            if dim % h:
                raise ValueError(f"{name}: arch['inhomo_heads'][{i}]={h} must divide the "
                                 f"stage's {dim} channels")
        return 'inhomogeneous'

    def adapt_state_dict(self, state_dict: Dict[str, torch.Tensor], prefix: str) -> None:
        """A backbone checkpoint without output norms (a converted classification checkpoint)
        keeps this model's output norms (at their initialisation), as the official downstream
        backbone's non-strict loading does; every other key must match."""
        if self.out_norms is None or any(k.startswith(prefix + 'out_norms.')
                                         for k in state_dict):
            return
        if not any(k.startswith(prefix + 'stages.') for k in state_dict):
            return
        state_dict.update(self.out_norms.state_dict(prefix=prefix + 'out_norms.'))
        print_log(f'{type(self).__name__}: the checkpoint has no output norms (a classification '
                  f'checkpoint); out_norms keep their initialisation', logger='current')

    def init_weights(self) -> None:
        super().init_weights()
        if self.init_cfg is not None:
            return
        # the official initialisation of its Linear layers (here also the FFN 1x1 convs)
        linear = [m for m in self.modules() if isinstance(m, nn.Linear)]
        for stage in self.stages:
            for block in stage:
                if isinstance(block, DWNetBlock):
                    linear += [block.ffn.fc1, block.ffn.fc2]
        for m in linear:
            nn.init.trunc_normal_(m.weight, std=.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

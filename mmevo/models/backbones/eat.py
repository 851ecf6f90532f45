# Copyright (c) mmevo contributors. All rights reserved.
"""EAT: `Analogous to Evolutionary Algorithm: Designing a Unified Sequence Model
<https://arxiv.org/abs/2105.15089>`_ (Zhang et al., NeurIPS 2021).

A re-implementation of the official ``EATransformer``
(``TencentYoutuResearch/BaseArchitecture-EAT``) with the ``main.py`` defaults the published models
were trained with, numerically equal to it with converted weights
(``tools/model_converters/eat_to_mmevo.py``); its class-attention head is
:class:`mmevo.models.heads.ClassAttentionHead`.
"""
import logging
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

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
    integer,
    real,
    sequence_of,
)
from ..layers.fast_path import fast_route
from ..layers.lean_linear import gelu_linear, layer_norm_linear
from ..layers.mlp import Mlp
from ..layers.norm import LayerNorm2d
from ..layers.residual import add_residual
from ..layers.simple_pyramid import SimplePyramid
from ..layers.token_attention import SelfAttention
from .base_backbone import StagedBackbone

#: Epsilon of every LayerNorm of the official model.
LN_EPS = 1e-6


class LocalBranch(nn.Module):
    """The local path of a block: ``Conv1d(Linear(x))`` along the token sequence.

    The tokens are in raster order, so the 1-D convolution (zero-padded at the two ends of the
    sequence only) makes the last token of a row a neighbour of the first token of the next row.

    Args:
        dim (int): Channels.
        kernel_size (int): Odd kernel of the 1-D convolution.
    """

    def __init__(self, dim: int, kernel_size: int = 3):
        super().__init__()
        self.linear = nn.Linear(dim, dim)
        self.conv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.linear(x).transpose(1, 2)).transpose(1, 2)


class GlobalLocalBlock(nn.Module):
    """One EAT block (the official ``Block_local``) on ``(B, N, C)`` tokens.

    The first ``C - int(C * local_ratio)`` channels take the global path (multi-head
    self-attention), the others the local path (:class:`LocalBranch`), each with its own
    pre-norm; both results are concatenated onto the residual, then an MLP sub-layer::

        x = x + [drop_path(attn(LN(x_global))), drop_path(local(LN(x_local)))]
        x = x + drop_path(mlp(LN(x)))

    (stochastic depth draws independent masks for the two paths, as the official code).

    Args:
        dim (int): Channels ``C``.
        num_heads (int): Heads of the global path's attention.
        mlp_ratio (float): MLP expansion. Defaults to 4.
        local_ratio (float): Share of channels on the local path. Defaults to 0.5.
        local_kernel_size (int): Kernel of the local 1-D convolution. Defaults to 3.
        qkv_bias (bool): Bias of the ``qkv`` projection. Defaults to True.
        drop (float): Dropout after projections and in the MLP. Defaults to 0.
        attn_drop (float): Attention dropout. Defaults to 0.
        drop_path (float): Stochastic depth rate. Defaults to 0.
    """

    def __init__(self,
                 dim: int,
                 num_heads: int,
                 mlp_ratio: float = 4.,
                 local_ratio: float = 0.5,
                 local_kernel_size: int = 3,
                 qkv_bias: bool = True,
                 drop: float = 0.,
                 attn_drop: float = 0.,
                 drop_path: float = 0.):
        super().__init__()
        self.local_dims = int(dim * local_ratio)
        self.global_dims = dim - self.local_dims
        self.norm_global = nn.LayerNorm(self.global_dims, eps=LN_EPS)
        self.attn = SelfAttention(self.global_dims, num_heads, qkv_bias, attn_drop, drop)
        self.norm_local = nn.LayerNorm(self.local_dims, eps=LN_EPS)
        self.local = LocalBranch(self.local_dims, local_kernel_size)
        self.norm_mlp = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fast_route(self, x):
            return self.forward_fast(x)
        x = x + self.global_local(x)
        return x + self.drop_path(self.mlp(self.norm_mlp(x)))

    def global_local(self, x: torch.Tensor) -> torch.Tensor:
        """The two paths, concatenated (each with its own stochastic depth mask)."""
        x_global, x_local = x.split([self.global_dims, self.local_dims], dim=-1)
        y_global = self.drop_path(self.attn(self.norm_global(x_global)))
        y_local = self.drop_path(self.local(self.norm_local(x_local)))
        return torch.cat([y_global, y_local], dim=-1)

    def forward_fast(self, x: torch.Tensor) -> torch.Tensor:
        """Training: the MLP keeps only its input and ``fc1``'s output for backward (the
        normalised tokens and GELU's output are recomputed, :mod:`~mmevo.models.layers.
        lean_linear`) and adds its residual with stochastic depth in one pass; inference: the
        plain ops."""
        x = x + self.global_local(x)
        if self.mlp.drop.p > 0:
            return add_residual(x, self.mlp(self.norm_mlp(x)), self.drop_path)
        h = layer_norm_linear(x, self.norm_mlp, self.mlp.fc1)
        return add_residual(x, gelu_linear(h, self.mlp.fc2), self.drop_path)


def resize_pos_embed(pos_embed: torch.Tensor, src: Tuple[int, int],
                     dst: Tuple[int, int]) -> torch.Tensor:
    """Bicubically resize ``(1, src_h * src_w, C)`` raster position embeddings to ``dst``
    (``align_corners=False``, as the official fine-tuning at 384 does)."""
    grid = pos_embed.reshape(1, src[0], src[1], -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(dst), mode='bicubic', align_corners=False)
    return grid.permute(0, 2, 3, 1).flatten(1, 2)


def _arch(embed_dims: int, num_heads: int) -> dict:
    # every published model: depth 12, main.py's stochastic depth 0.1
    return dict(embed_dims=embed_dims, depth=12, num_heads=num_heads, drop_path_rate=0.1)


def _image_size(value) -> Tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


_SIZE = POSITIVE_INT | sequence_of(POSITIVE_INT, length=2)


@MODELS.register_module()
class EAT(StagedBackbone):
    """EAT backbone.

    A port of `EAT <https://arxiv.org/abs/2105.15089>`_ (the official ``EATransformer`` with the
    ``main.py`` settings of the published models): a ``patch_size`` x ``patch_size`` patch
    embedding, learned position embeddings and ``depth`` :class:`GlobalLocalBlock` blocks on
    raster-ordered tokens. The official space-filling-curve tokenizer (``LocED('sis')``: pixels
    reordered patch by patch, then ``Conv1d(kernel=stride=patch_size**2)``) is exactly this
    patch convolution with the Conv1d weight reshaped ``[C, 3, p*p] -> [C, 3, p, p]`` (the
    converter does it; its two integer permutation tensors are not weights and are dropped).

    EAT is columnar, so, as mmpretrain's ``VisionTransformer``, every block is a "stage":
    ``out_indices`` and ``frozen_stages`` count blocks, and every output is the
    ``(B, C, H/p, W/p)`` map of a block's tokens. The final LayerNorm and the class-attention
    blocks of the official model are the head (:class:`~mmevo.models.heads.ClassAttentionHead`).

    Input sizes: the position embeddings are stored for ``img_size``. Another input size (any
    multiple of ``patch_size``) resizes them bicubically at every forward; a checkpoint of
    another ``img_size`` is resized once when loaded. The local path's 1-D convolution runs over
    raster order at every size, so a row's last token neighbours the next row's first token;
    at the trained size this is the official model exactly, at another width the pairs of
    tokens that wrap around change with the row length.

    Dense tasks (``dense=True``): inputs of any size are zero-padded right/bottom to a multiple of
    ``patch_size`` (the padded tokens take part in attention and in the local convolution, as
    Swin's padded windows do) and every output gets a channel LayerNorm (``out_norms``).
    ``pyramid=True`` (implies ``dense``) turns the outputs into four maps at strides
    ``p/4, p/2, p, 2p`` with :class:`~mmevo.models.layers.SimplePyramid` (ViTDet's simple
    pyramid: ``(C/4, C/2, C, C)`` channels), from the four blocks of ``out_indices`` (the
    block-tap pyramid of mmseg's BEiT/MAE configs; ``(2, 5, 8, 11)`` in mmevo's configs) or from
    one block (ViTDet); the maps are cropped to ``ceil(H / stride)``. The pyramid and the output
    norms are the only layers a classification checkpoint does not have: such a checkpoint
    loads into a dense EAT (every load path), the missing dense-only layers keep their
    initialisation and are named in a warning (``initialised_fresh``); any other missing or
    unexpected key is an error as always.

    Args:
        arch (str | dict): ``'tiny'``/``'ti'`` (EAT-Ti), ``'small'``/``'s'``, ``'medium'``/``'m'``,
            ``'base'``/``'b'`` (the official ``eat_progress3/6/9/12``), or a dict with
            ``embed_dims``, ``depth`` and ``num_heads`` (the official ``num_heads``: the heads
            of the class-attention head; the global path of every block has
            ``num_heads // 2``) and any of ``mlp_ratio`` (4), ``local_ratio`` (0.5),
            ``local_kernel_size`` (3, odd), ``qkv_bias`` (True), ``patch_size`` (16),
            ``drop_path_rate`` (the published stochastic depth; 0.1 in the zoo, 0 for a dict).
        img_size (int | tuple[int, int]): The size the position embeddings are stored for (224,
            384, or any multiple of ``patch_size``). Defaults to 224.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (int | Sequence[int]): Blocks whose outputs are returned. Defaults to -1,
            the last block.
        drop_path_rate (float, optional): Overrides the arch's stochastic depth rate (linearly
            increased over the blocks).
        drop_rate (float): Dropout after the position embedding, the projections and in the
            MLPs. Defaults to 0.
        attn_drop_rate (float): Attention dropout. Defaults to 0.
        dense (bool): Dense-task mode (padding, output norms; see above). Defaults to False.
        pyramid (bool): Four-level pyramid outputs (see above; implies ``dense``). Defaults to
            False.
        pyramid_norm_cfg (dict): Norm inside the stride-``p/4`` level of the pyramid. Defaults
            to a channel LayerNorm (eps 1e-6), as ViTDet.
        frozen_stages (int): -1: nothing; 0: the patch embedding and position embeddings;
            ``i > 0``: those and blocks ``0 .. i-1`` (with their output norms and the pyramid
            levels fed only by them). Defaults to -1.
        norm_eval (bool): Keep BatchNorms (only a BN ``pyramid_norm_cfg`` has one) in eval mode.
            Defaults to False.
        with_cp (bool): Gradient checkpointing of the patch embedding and of every block.
            Defaults to False.
        channels_last (bool): Channels-last input to the patch embedding. Defaults to False.
        out_channels_last (bool): Return maps as computed (a channels-last view of the tokens)
            instead of contiguous NCHW copies. Defaults to False.
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=..., prefix='backbone.')``.

    Examples:
        >>> import torch
        >>> from mmevo.models import EAT
        >>> model = EAT('tiny', out_indices=(3, 7, 11)).eval()
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 224, 224))]
        [(1, 192, 14, 14), (1, 192, 14, 14), (1, 192, 14, 14)]
        >>> dense = EAT('tiny', out_indices=(2, 5, 8, 11), pyramid=True).eval()
        >>> [tuple(o.shape) for o in dense(torch.rand(1, 3, 200, 300))]
        [(1, 48, 50, 75), (1, 96, 25, 38), (1, 192, 13, 19), (1, 192, 7, 10)]
    """
    arch_zoo = {
        **dict.fromkeys(['ti', 'tiny'], _arch(192, 4)),
        **dict.fromkeys(['s', 'small'], _arch(384, 6)),
        **dict.fromkeys(['m', 'medium'], _arch(576, 8)),
        **dict.fromkeys(['b', 'base'], _arch(768, 12)),
    }
    essential_keys = ('embed_dims', 'depth', 'num_heads')
    arch_defaults = dict(
        mlp_ratio=4.,
        local_ratio=0.5,
        local_kernel_size=3,
        qkv_bias=True,
        patch_size=16,
        drop_path_rate=0.)
    arch_domains = {
        'embed_dims': POSITIVE_INT,
        'depth': POSITIVE_INT,
        'num_heads': integer(2),
        'mlp_ratio': POSITIVE_REAL,
        'local_ratio': real(0, 1, high_open=True, low_open=True),
        'local_kernel_size': POSITIVE_INT,
        'qkv_bias': BOOL,
        'patch_size': POSITIVE_INT,
        'drop_path_rate': real(0, 1, high_open=True),
    }
    arg_domains = {
        'img_size': _SIZE,
        'drop_rate': real(0, 1, high_open=True),
        'attn_drop_rate': real(0, 1, high_open=True),
        'dense': BOOL,
        'pyramid': BOOL,
        'pyramid_norm_cfg': Domain(lambda v: isinstance(v, dict) and 'type' in v,
                                   "a dict with a 'type' (mmcv norm config)"),
    }
    min_input_size = 16

    def __init__(self,
                 arch: Union[str, dict] = 'tiny',
                 img_size: Union[int, Sequence[int]] = 224,
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_path_rate: Optional[float] = None,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 dense: bool = False,
                 pyramid: bool = False,
                 pyramid_norm_cfg: dict = dict(type='LN2d', eps=1e-6),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 channels_last: bool = False,
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
        self.check_args(img_size=img_size, drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                        dense=dense, pyramid=pyramid, pyramid_norm_cfg=pyramid_norm_cfg)
        s = self.arch_settings
        name = type(self).__name__
        self.embed_dims = s['embed_dims']
        self.patch_size = p = s['patch_size']
        self.img_size = _image_size(img_size)
        if any(side % p for side in self.img_size):
            raise ValueError(f'{name}: img_size={img_size!r} must be made of multiples of '
                             f"patch_size={p} (the position embeddings' grid)")
        self.dense = dense or pyramid
        self.input_multiple = 1 if self.dense else p
        self.min_input_size = p
        if pyramid and len(self.out_indices) not in (1, 4):
            raise ValueError(f'{name}: pyramid=True builds four levels from one block (ViTDet) '
                             f'or from four blocks, so out_indices needs 1 or 4 entries, got '
                             f'out_indices={out_indices!r}')
        if pyramid and self.embed_dims % 4:
            raise ValueError(f"{name}: pyramid=True needs arch['embed_dims'] divisible by 4 "
                             f"(C/4 channels at stride {p // 4}), got {self.embed_dims}")

        self.stem = nn.Conv2d(in_channels, self.embed_dims, p, p)
        self.pos_grid = (self.img_size[0] // p, self.img_size[1] // p)
        self.pos_embed = nn.Parameter(torch.zeros(1, math.prod(self.pos_grid), self.embed_dims))
        self.drop_after_pos = nn.Dropout(drop_rate)
        dpr = self.drop_path_rates(s['depth'])
        self.stages = nn.ModuleList(
            nn.Sequential(
                GlobalLocalBlock(
                    self.embed_dims,
                    s['num_heads'] // 2,
                    mlp_ratio=s['mlp_ratio'],
                    local_ratio=s['local_ratio'],
                    local_kernel_size=s['local_kernel_size'],
                    qkv_bias=s['qkv_bias'],
                    drop=drop_rate,
                    attn_drop=attn_drop_rate,
                    drop_path=rate)) for rate in dpr)
        if self.dense:
            self.out_norms = nn.ModuleList(
                LayerNorm2d(self.embed_dims, eps=LN_EPS) for _ in self.out_indices)
        self.pyramid = SimplePyramid(self.embed_dims, p, pyramid_norm_cfg) if pyramid else None
        self.initialised_fresh: Tuple[str, ...] = ()
        self._grid = self.pos_grid
        self._init_parameters()
        self._post_build([self.embed_dims] * s['depth'], [p] * s['depth'])

    @classmethod
    def stages_of(cls, settings: dict) -> int:
        return settings['depth']

    @classmethod
    def feature_indices(cls, settings: dict) -> Tuple[int, ...]:
        """Four evenly spaced blocks (``(2, 5, 8, 11)`` of 12), as mmseg's ViT configs tap."""
        depth = settings['depth']
        return tuple(sorted({max(0, depth * k // 4 - 1) for k in range(1, 5)}))

    @classmethod
    def check_arch_rules(cls, s: dict) -> None:
        name = cls.__name__
        dim, heads = s['embed_dims'], s['num_heads']
        local_dims = int(dim * s['local_ratio'])
        global_dims = dim - local_dims
        if local_dims < 1 or global_dims < 1:
            raise ValueError(f"{name}: arch['local_ratio']={s['local_ratio']} leaves "
                             f'{global_dims} global and {local_dims} local channels of '
                             f"arch['embed_dims']={dim}; both need at least one")
        if dim % heads:
            raise ValueError(f"{name}: arch['embed_dims']={dim} must be a multiple of "
                             f"arch['num_heads']={heads} (the class-attention heads)")
        if global_dims % (heads // 2):
            raise ValueError(f'{name}: the {global_dims} global channels must be a multiple of '
                             f"the global path's arch['num_heads'] // 2 = {heads // 2} heads")
        if s['local_kernel_size'] % 2 == 0:
            raise ValueError(f"{name}: arch['local_kernel_size']={s['local_kernel_size']} must "
                             f'be odd (the 1-D convolution keeps the sequence length)')

    def _init_parameters(self) -> None:
        # the official initialisation: truncated-normal (std 0.02) Linear weights and position
        # embeddings, zero Linear biases; convolutions and LayerNorms keep PyTorch's defaults
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.stages.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def _multiple_reason(self) -> str:
        return f' ({self.patch_size}x{self.patch_size} patches; dense=True pads instead)'

    # --------------------------------------------------------------------------- forward

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding (inputs padded to a multiple of the patch in dense mode) plus the
        position embeddings; returns raster-ordered ``(B, N, C)`` tokens."""
        if self.dense:
            p = self.patch_size
            x = F.pad(x, (0, -x.shape[-1] % p, 0, -x.shape[-2] % p))
        x = self._run(self.stem, x)
        self._grid = tuple(x.shape[-2:])
        tokens = x.permute(0, 2, 3, 1).flatten(1, 2)
        return self.drop_after_pos(tokens + self.pos_embed_for(self._grid))

    def pos_embed_for(self, grid: Tuple[int, int]) -> torch.Tensor:
        """Position embeddings for a ``grid`` of patches (resized bicubically unless it is the
        stored one)."""
        if tuple(grid) == self.pos_grid:
            return self.pos_embed
        return resize_pos_embed(self.pos_embed, self.pos_grid, grid)

    def stage_output(self, index: int, x: torch.Tensor) -> torch.Tensor:
        # (B, N, C) raster tokens -> (B, C, H/p, W/p), a channels-last view
        return x.unflatten(1, self._grid).permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outs = super().forward(x)
        if self.pyramid is None:
            return outs
        outs = self.pyramid(outs, tuple(x.shape[-2:]))
        fmt = torch.channels_last if self.out_channels_last else torch.contiguous_format
        return tuple(o.contiguous(memory_format=fmt) for o in outs)

    @property
    def out_channels(self) -> Tuple[int, ...]:
        if self.pyramid is not None:
            return self.pyramid.out_channels
        return super().out_channels

    @property
    def out_strides(self) -> Tuple[int, ...]:
        if self.pyramid is not None:
            return self.pyramid.out_strides
        return super().out_strides

    # -------------------------------------------------------------- freezing and loading

    def frozen_modules(self) -> List[nn.Module]:
        modules = super().frozen_modules()
        if self.frozen_stages < 0:
            return modules
        modules.append(self.pos_embed)
        if self.pyramid is not None:
            taps = list(self.out_indices) * (4 // len(self.out_indices))
            modules += [level for level, tap in zip(self.pyramid.levels, taps)
                        if tap < self.frozen_stages]
        return modules

    def _is_stem_param(self, name: str) -> bool:
        return name == 'pos_embed'

    def dense_only_keys(self) -> List[str]:
        """State-dict keys of the layers a classification checkpoint does not have (output
        norms and pyramid)."""
        return [k for k in self.state_dict() if k.startswith(('out_norms.', 'pyramid.'))]

    def adapt_state_dict(self, state_dict: Dict[str, torch.Tensor], prefix: str) -> None:
        """Resize a checkpoint's position embeddings of another (square) grid to this model's,
        and keep this model's dense-only layers for a classification checkpoint (named in a
        warning). Idempotent."""
        key = prefix + 'pos_embed'
        pos = state_dict.get(key)
        if pos is not None and pos.dim() == 3 and pos.shape[1] != self.pos_embed.shape[1]:
            side = math.isqrt(pos.shape[1])
            if side * side != pos.shape[1]:
                raise ValueError(f'{type(self).__name__}: cannot resize {key} of '
                                 f'{pos.shape[1]} tokens (not a square grid) to '
                                 f'{self.pos_grid}')
            state_dict[key] = resize_pos_embed(pos, (side, side), self.pos_grid)
        dense_keys = self.dense_only_keys()
        if dense_keys and not any(prefix + k in state_dict for k in dense_keys):
            own = self.state_dict()
            for k in dense_keys:
                state_dict[prefix + k] = own[k]
            self.initialised_fresh = tuple(dense_keys)
            print_log(f'{type(self).__name__}: the checkpoint has no dense-task layers (a '
                      f'classification checkpoint); these keep their initialisation: '
                      f'{", ".join(dense_keys)}', logger='current', level=logging.WARNING)

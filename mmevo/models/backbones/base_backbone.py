# Copyright (c) mmevo contributors. All rights reserved.
"""The base of every mmevo backbone: a stem, then stages, returning selected stage outputs.

:class:`StagedBackbone` holds what the families share, so that a family file holds only its arch
table, its blocks and how they are wired:

* ``arch`` from an ``arch_zoo`` (aliases, case-insensitive) or a custom dict, checked against
  ``essential_keys``, ``arch_defaults`` and ``arch_domains`` (data; errors name the key, the value
  and what is allowed); constructor arguments checked against ``arg_domains``;
* input checks (type, dtype, rank, channels, minimum size, required multiples);
* the staged forward: channels-last inside when asked, ``with_cp`` gradient checkpointing of the
  stem and of every layer of every stage, early exit after the last requested stage, optional
  per-output norms, and outputs as contiguous NCHW maps (channels-last only on request:
  third-party ops such as mmcv's RoIAlign read raw NCHW memory);
* ``out_indices``, ``frozen_stages`` (mmdet semantics), ``norm_eval``, ``get_layer_depth`` for
  layer-wise learning-rate decay, ``fuse()`` for inference folding, and strict, safe loading
  of ``init_cfg=dict(type='Pretrained', ...)`` with a hook to adapt a state dict (e.g. resize
  position embeddings) before the strict check.

A family subclass sets the class attributes, builds ``self.stem`` and ``self.stages`` (an
``nn.ModuleList`` of ``nn.Sequential`` stages) in ``__init__`` after calling
``super().__init__(...)``, and ends its ``__init__`` with ``self._post_build(stage_channels,
stage_strides)``.
"""
import copy
import difflib
from contextlib import contextmanager, nullcontext
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from mmengine.utils.dl_utils.parrots_wrapper import _BatchNorm

from mmevo.utils.checkpoint import load_weights, read_checkpoint
from mmevo.utils.validation import BOOL, PROBABILITY, Domain, check_value, integer, sequence_of
from ..layers.folding import fuse_modules

__all__ = ['StagedBackbone']


def _out_indices_domain(num_stages: int) -> Domain:
    index = integer(-num_stages, num_stages - 1)
    seq = sequence_of(index)
    text = (f'an int or a non-empty list/tuple of distinct ints in [-{num_stages}, '
            f'{num_stages - 1}] (stage indices)')

    def check(v):
        if isinstance(v, (list, tuple)):
            return v in seq and len({i % num_stages for i in v}) == len(v)
        return v in index

    return Domain(check, text)


class StagedBackbone(BaseModule):
    """Base of mmevo's backbones (see the module docstring).

    Args:
        arch (str | dict): A name (or alias) in :attr:`arch_zoo`, or a custom dict with the
            :attr:`essential_keys` and any of :attr:`arch_defaults`.
        in_channels (int): Input channels. Defaults to 3.
        out_indices (int | Sequence[int]): Stages whose outputs are returned (negative counts
            from the end). Defaults to -1, the last stage.
        drop_path_rate (float, optional): Stochastic depth rate in ``[0, 1)``, increased
            linearly over all blocks; None takes the arch's ``drop_path_rate`` (or 0).
        frozen_stages (int): -1: nothing frozen; 0: the stem; ``i > 0``: the stem and stages
            ``0 .. i-1`` (and their output norms). Frozen parts are in eval mode and get no
            gradients. Defaults to -1.
        norm_eval (bool): Keep every BatchNorm in eval mode while training. Defaults to False.
        with_cp (bool): Gradient checkpointing of the stem and of every layer of every stage
            (less memory, one more forward in backward). Defaults to False.
        channels_last (bool): Compute on channels-last maps inside the backbone. Defaults to
            False.
        out_channels_last (bool): Return the maps in the layout they were computed in instead
            of contiguous NCHW. Only for callers that accept strided maps: mmcv's CPU ops
            (RoIAlign, deformable convolutions) read raw NCHW memory. Defaults to False.
        init_cfg (dict | list, optional): ``dict(type='Pretrained', checkpoint=...,
            prefix='backbone.')`` loads strictly and safely (:meth:`load_pretrained`).

    Class attributes of a family:
        arch_zoo (dict): name -> arch settings (aliases map to the same dict).
        arch_defaults (dict): optional arch keys and their defaults.
        essential_keys (tuple): keys a custom arch dict must have.
        arch_domains (dict): arch key -> :class:`~mmevo.utils.validation.Domain`, or a
            callable ``(num_stages) -> Domain`` for per-stage values.
        arg_domains (dict): constructor argument -> Domain (checked by
            :meth:`check_args`).
        num_stages (int): Stages of a hierarchical backbone (families whose stage count
            depends on the arch override :meth:`stages_of`).
        min_input_size (int): Smallest input side. input_multiple (int): required multiple of
            input sides (1: any).
    """
    arch_zoo: Dict[str, dict] = {}
    arch_defaults: Dict[str, Any] = {}
    essential_keys: Tuple[str, ...] = ()
    arch_domains: Dict[str, Any] = {}
    arg_domains: Dict[str, Domain] = {}
    num_stages: int = 4
    min_input_size: int = 32
    input_multiple: int = 1

    def __init__(self,
                 arch: Union[str, dict],
                 in_channels: int = 3,
                 out_indices: Union[int, Sequence[int]] = -1,
                 drop_path_rate: Optional[float] = None,
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 channels_last: bool = False,
                 out_channels_last: bool = False,
                 init_cfg: Optional[Union[dict, list]] = None,
                 arch_overrides: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        name = type(self).__name__
        self.arch_settings = self.parse_arch(arch, **(arch_overrides or {}))
        self.num_stages = self.stages_of(self.arch_settings)
        check_value(name, 'in_channels', in_channels, integer(1))
        check_value(name, 'out_indices', out_indices, _out_indices_domain(self.num_stages))
        if drop_path_rate is None:
            drop_path_rate = self.arch_settings.get('drop_path_rate', 0.)
        check_value(name, 'drop_path_rate', drop_path_rate, PROBABILITY)
        check_value(name, 'frozen_stages', frozen_stages, integer(-1, self.num_stages))
        for arg, value in (('norm_eval', norm_eval), ('with_cp', with_cp),
                           ('channels_last', channels_last),
                           ('out_channels_last', out_channels_last)):
            check_value(name, arg, value, BOOL)
        _check_init_cfg(name, init_cfg)
        self.in_channels = in_channels
        indices = [out_indices] if isinstance(out_indices, int) else list(out_indices)
        self.out_indices = tuple(sorted(i % self.num_stages for i in indices))
        self.drop_path_rate = float(drop_path_rate)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.with_cp = with_cp
        self.channels_last = channels_last
        self.out_channels_last = out_channels_last
        self.fused = False
        self.out_norms: Optional[nn.ModuleList] = None

    # ----------------------------------------------------------------- arch and arguments

    @classmethod
    def stages_of(cls, settings: dict) -> int:
        """The number of stages of an arch (``num_stages`` for hierarchical backbones)."""
        return cls.num_stages

    @classmethod
    def feature_indices(cls, settings: dict) -> Tuple[int, ...]:
        """The stages a feature extractor returns by default (``mmevo.create_backbone``):
        every stage of a hierarchical backbone."""
        return tuple(range(cls.stages_of(settings)))

    @classmethod
    def parse_arch(cls, arch: Union[str, dict], **overrides) -> dict:
        """Resolve ``arch`` into a full, checked settings dict (a copy).

        ``overrides`` (constructor arguments that replace arch values, None: keep) are
        applied before the checks.

        Raises:
            ValueError: an unknown name (with the close matches), missing or unknown keys of a
                custom dict, or a value outside its domain (naming key, value and domain).
            TypeError: ``arch`` is neither a str nor a dict.
        """
        name = cls.__name__
        if isinstance(arch, str):
            key = arch.lower()
            if key not in cls.arch_zoo:
                close = difflib.get_close_matches(key, list(cls.arch_zoo), n=3, cutoff=0.5)
                hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ''
                raise ValueError(f'Arch {arch!r} is not in default archs of {name}: '
                                 f'{sorted(cls.arch_zoo)}.{hint}')
            arch = cls.arch_zoo[key]
        elif not isinstance(arch, dict):
            raise TypeError(f'{name}: arch must be a str (one of {sorted(cls.arch_zoo)}) or a '
                            f'dict, got {type(arch).__name__}')
        missing = [k for k in cls.essential_keys if k not in arch]
        if missing:
            raise ValueError(f'{name}: a custom arch needs a dict with keys '
                             f'{list(cls.essential_keys)}; missing {missing}')
        unknown = set(arch) - set(cls.essential_keys) - set(cls.arch_defaults)
        if unknown:
            raise ValueError(f'{name}: unknown arch keys {sorted(unknown)}; allowed: '
                             f'{list(cls.essential_keys) + sorted(cls.arch_defaults)}')
        settings = copy.deepcopy({**cls.arch_defaults, **arch})
        settings.update({k: copy.deepcopy(v) for k, v in overrides.items() if v is not None})
        cls.check_arch(settings)
        return settings

    @classmethod
    def check_arch(cls, settings: dict) -> None:
        """Check every value with a domain in :attr:`arch_domains`, then the family's
        cross-key rules (:meth:`check_arch_rules`)."""
        num_stages = cls.stages_of(settings)
        for key, domain in cls.arch_domains.items():
            if key not in settings:
                continue
            if not isinstance(domain, Domain):
                domain = domain(num_stages)
            check_value(cls.__name__, f'arch[{key!r}]', settings[key], domain)
        cls.check_arch_rules(settings)

    @classmethod
    def check_arch_rules(cls, settings: dict) -> None:
        """Family rules across keys (e.g. head dimensions dividing widths); raise ValueError."""

    def check_args(self, **values) -> None:
        """Check constructor arguments against :attr:`arg_domains`."""
        for arg, value in values.items():
            check_value(type(self).__name__, arg, value, self.arg_domains[arg])

    def drop_path_rates(self, num_blocks: int) -> List[float]:
        """Stochastic depth rates increasing linearly from 0 to ``drop_path_rate``."""
        return torch.linspace(0, self.drop_path_rate, num_blocks).tolist()

    # ------------------------------------------------------------------------- building

    def _post_build(self, stage_channels: Sequence[int], stage_strides: Sequence[int]) -> None:
        """Finish ``__init__``: record what every stage outputs, freeze, set the layout.

        Args:
            stage_channels: Channels of every stage's output (all stages).
            stage_strides: Stride of every stage's output relative to the input.
        """
        assert len(self.stages) == self.num_stages == len(stage_channels) == len(stage_strides)
        self.stage_channels = tuple(int(c) for c in stage_channels)
        self.stage_strides = tuple(int(s) for s in stage_strides)
        self._freeze_stages()
        self._set_memory_format()

    @property
    def out_channels(self) -> Tuple[int, ...]:
        """Channels of the returned maps, in ``out_indices`` order (for neck configs)."""
        return tuple(self.stage_channels[i] for i in self.out_indices)

    @property
    def out_strides(self) -> Tuple[int, ...]:
        """Strides of the returned maps, in ``out_indices`` order."""
        return tuple(self.stage_strides[i] for i in self.out_indices)

    def _set_memory_format(self) -> None:
        # Weights in the layout of the maps: oneDNN then needs no reorder per call (in-place
        # optimizer updates and load_state_dict keep the layout).
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    # -------------------------------------------------------------------------- forward

    def check_input(self, x: Any) -> None:
        """Raise a clear error for an input the backbone cannot take."""
        name = type(self).__name__
        if not torch.is_tensor(x):
            raise TypeError(f'{name} expects a float tensor of shape (N, {self.in_channels}, '
                            f'H, W), got {type(x).__name__}; convert images with '
                            f'torch.as_tensor / torchvision transforms first')
        if not x.is_floating_point():
            raise TypeError(f'{name} expects a floating-point tensor, got dtype {x.dtype}; '
                            f'convert with x.float() (and normalise) first')
        if x.dim() != 4:
            raise ValueError(f'{name} expects an NCHW batch (N, {self.in_channels}, H, W), got '
                             f'a tensor of shape {tuple(x.shape)}')
        if x.shape[1] != self.in_channels:
            raise ValueError(f'{name} was built for in_channels={self.in_channels} but the '
                             f'input has {x.shape[1]} channels (shape {tuple(x.shape)})')
        h, w = x.shape[-2:]
        if h < self.min_input_size or w < self.min_input_size:
            raise ValueError(f'input {h}x{w} is too small for {name}: both sides must be at '
                             f'least {self.min_input_size}')
        if self.input_multiple > 1 and (h % self.input_multiple or w % self.input_multiple):
            raise ValueError(f'{name}{self._multiple_reason()} needs input sides that are '
                             f'multiples of {self.input_multiple}, got {h}x{w}; resize or pad '
                             f'the input')

    def _multiple_reason(self) -> str:
        return ''

    def _use_cp(self, x: torch.Tensor, module: nn.Module) -> bool:
        if not (self.with_cp and torch.is_grad_enabled()):
            return False
        return x.requires_grad or any(p.requires_grad for p in module.parameters())

    def _run(self, module: nn.Module, x):
        if self._use_cp(x, module):
            return cp.checkpoint(module, x, use_reentrant=False,
                                 context_fn=lambda: (nullcontext(), _bn_stats_kept(module)))
        return module(x)

    def forward_stem(self, x: torch.Tensor):
        """The stem (checkpointed with ``with_cp``)."""
        return self._run(self.stem, x)

    def forward_stage(self, index: int, x):
        """Stage ``index``: its layers in turn, each checkpointed with ``with_cp``."""
        for layer in self.stages[index]:
            x = self._run(layer, x)
        return x

    def stage_output(self, index: int, x) -> torch.Tensor:
        """The NCHW map stage ``index`` returns, from what it computed (``x``); families with
        token stages reshape here. Output norms and the layout are applied after."""
        return x

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        self.check_input(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.forward_stem(x)
        outs = []
        for i in range(self.out_indices[-1] + 1):
            x = self.forward_stage(i, x)
            if i in self.out_indices:
                out = self.stage_output(i, x)
                if self.out_norms is not None:
                    out = self.out_norms[self.out_indices.index(i)](out)
                outs.append(out if self.out_channels_last else out.contiguous())
        return tuple(outs)

    # -------------------------------------------------------------- freezing and modes

    def frozen_modules(self) -> List[nn.Module]:
        """Modules frozen by ``frozen_stages``: the stem (and what belongs to it, e.g.
        position embeddings), then stages ``0 .. frozen_stages - 1`` and their output norms."""
        if self.frozen_stages < 0:
            return []
        modules = [self.stem]
        for i in range(self.frozen_stages):
            modules.append(self.stages[i])
            if self.out_norms is not None and i in self.out_indices:
                modules.append(self.out_norms[self.out_indices.index(i)])
        return modules

    def _freeze_stages(self) -> None:
        for module in self.frozen_modules():
            if isinstance(module, nn.Parameter):
                module.requires_grad = False
                continue
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> 'StagedBackbone':
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    def get_layer_depth(self, param_name: str, prefix: str = '') -> Tuple[int, int]:
        """Layer id of a parameter for layer-wise learning-rate decay.

        The stem is layer 0, the ``k``-th layer of the stages (counted over all stages) is
        layer ``k + 1``, an output norm belongs to its stage's last layer, and everything
        outside the backbone (heads) is the last layer.

        Returns:
            tuple[int, int]: ``(layer_id, num_layers)``.
        """
        sizes = [len(stage) for stage in self.stages]
        num_layers = sum(sizes) + 2
        if not param_name.startswith(prefix):
            return num_layers - 1, num_layers
        parts = param_name[len(prefix):].split('.')
        if parts[0] == 'stages':
            stage, layer = int(parts[1]), int(parts[2])
            return sum(sizes[:stage]) + layer + 1, num_layers
        if parts[0] == 'out_norms':
            stage = self.out_indices[int(parts[1])]
            return sum(sizes[:stage + 1]), num_layers
        if parts[0] in ('stem', ) or self._is_stem_param(parts[0]):
            return 0, num_layers
        return num_layers - 1, num_layers

    def _is_stem_param(self, name: str) -> bool:
        """Top-level parameters that belong to the stem (e.g. ``pos_embed``)."""
        return False

    @torch.no_grad()
    def fuse(self) -> 'StagedBackbone':
        """Fold what is exact for inference (BatchNorms, layer scales, op weights) into the
        convolutions of every sub-module that can (``fuse()`` of each), in eval mode.

        Returns the backbone; it should not be trained afterwards.
        """
        fuse_modules(self)
        self._set_memory_format()
        self.fused = True
        return self

    # -------------------------------------------------------------------------- loading

    def init_weights(self) -> None:
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            self.load_pretrained(
                cfg['checkpoint'],
                prefix=cfg.get('prefix'),
                map_location=cfg.get('map_location', 'cpu'))
            self._is_init = True
            return
        super().init_weights()

    def load_pretrained(self,
                        checkpoint: str,
                        prefix: Optional[str] = None,
                        map_location: str = 'cpu',
                        allow_nonfinite: bool = False) -> None:
        """Load a checkpoint strictly and safely (never running code from it).

        Args:
            checkpoint (str): Path or URL of an mmevo (converted) checkpoint.
            prefix (str, optional): Take the keys under this prefix (``'backbone.'`` for a
                classifier or detector checkpoint).
            map_location (str): Where to load tensors. Defaults to 'cpu'.
            allow_nonfinite (bool): Accept NaN/Inf values. Defaults to False.

        Raises:
            FileNotFoundError, CheckpointError, UnsafeCheckpointError: the file is missing,
                not a checkpoint, or refused as unsafe.
            StateDictMismatchError: a wrong prefix (naming the one that fits), missing or
                unexpected keys; ValueError: mis-shaped or non-finite tensors.
        """
        ckpt = read_checkpoint(checkpoint, map_location=map_location,
                               allow_nonfinite=allow_nonfinite)
        load_weights(self, ckpt, prefix=prefix, source=checkpoint,
                     allow_nonfinite=allow_nonfinite)
        if prefix:
            _log_unused_parts(type(self).__name__, ckpt, prefix, checkpoint)

    def adapt_state_dict(self, state_dict: Dict[str, torch.Tensor], prefix: str) -> None:
        """Adapt a state dict in place before it is loaded (``prefix``: this module's key
        prefix), e.g. resize position embeddings to this model's grid. Called by every load
        path (``load_state_dict``, ``init_cfg``, mmengine's ``load_checkpoint``); must be
        idempotent."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        self.adapt_state_dict(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def _log_unused_parts(name: str, checkpoint: Mapping, prefix: str, source: str) -> None:
    """Name the parts of a checkpoint that a prefixed load leaves out (e.g. a classifier's
    ``head.*`` when a detector's backbone loads ImageNet weights)."""
    from mmengine.logging import print_log

    from mmevo.utils.checkpoint import weights_of
    prefix = prefix if prefix.endswith('.') else prefix + '.'
    parts: Dict[str, int] = {}
    for key in weights_of(checkpoint):
        if not key.startswith(prefix):
            part = '.'.join(key.split('.')[:2])
            parts[part] = parts.get(part, 0) + 1
    if parts:
        unused = ', '.join(f'{part}.* ({n} tensors)' for part, n in sorted(parts.items()))
        print_log(f'{name}: loaded the {prefix}* weights of {source}; not used here: {unused}',
                  logger='current')


@contextmanager
def _bn_stats_kept(module: nn.Module) -> Iterator[None]:
    """Restore the BatchNorm statistics of ``module`` after the block: the recomputation of a
    checkpointed layer in backward must not update them a second time."""
    bns = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.training
           and m.track_running_stats and m.running_mean is not None]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in bns]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, count) in zip(bns, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)


def _check_init_cfg(name: str, init_cfg) -> None:
    cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg]
    for cfg in cfgs:
        if cfg is None:
            continue
        if not isinstance(cfg, dict) or 'type' not in cfg:
            raise ValueError(f"{name}: init_cfg must be a dict with a 'type' (or a list of "
                             f'them), got {cfg!r}')
        if cfg['type'] == 'Pretrained' and not isinstance(cfg.get('checkpoint'), str):
            raise ValueError(f"{name}: init_cfg=dict(type='Pretrained') needs checkpoint=<path "
                             f"or URL>, got {cfg.get('checkpoint')!r}")

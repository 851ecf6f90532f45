# Copyright (c) mmevo contributors. All rights reserved.
from typing import Callable, Dict, List, Optional, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from mmevo.registry import OPTIM_WRAPPER_CONSTRUCTORS

NORM_TYPES = (_BatchNorm, _InstanceNorm, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Layer-wise learning-rate decay for classifiers, detectors and segmentors.

    The learning rate of a parameter at depth ``i`` of ``n`` layers is scaled by
    ``layer_decay_rate ** (n - 1 - i)``: the layers closest to the output (heads, necks)
    keep the base rate and the stem gets the smallest. Depths come from the model's
    ``get_layer_depth(name)`` or, for detectors and segmentors, which have none, from
    ``model.backbone.get_layer_depth(name, 'backbone.')``; the backbone puts every parameter
    outside itself on its last layer.

    ``paramwise_cfg`` keys:

    - ``layer_decay_rate`` (float, required): decay per layer, e.g. 0.9.
    - ``bias_decay_mult``, ``norm_decay_mult``, ``flat_decay_mult`` (float): weight-decay
      multipliers of biases, normalisation parameters and other 1-D parameters
      (positional scales, layer-scale gammas). Default 1.
    - ``custom_keys`` (dict): ``{substring: dict(lr_mult=..., decay_mult=...)}`` applied on
      top, the longest matching key winning.

    Example:
        >>> optim_wrapper = dict(
        ...     optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.05),
        ...     constructor='mmevo.LayerDecayOptimWrapperConstructor',
        ...     paramwise_cfg=dict(layer_decay_rate=0.9, norm_decay_mult=0.,
        ...                        flat_decay_mult=0.))
    """

    SUPPORTED_KEYS = ('layer_decay_rate', 'bias_decay_mult', 'norm_decay_mult',
                      'flat_decay_mult', 'custom_keys')

    def _validate_cfg(self) -> None:
        super()._validate_cfg()
        unknown = set(self.paramwise_cfg) - set(self.SUPPORTED_KEYS)
        if unknown:
            raise ValueError(f'{type(self).__name__} does not support paramwise_cfg keys '
                             f'{sorted(unknown)}; supported: {list(self.SUPPORTED_KEYS)}')
        rate = self.paramwise_cfg.get('layer_decay_rate')
        if rate is None or not 0 < rate <= 1:
            raise ValueError('paramwise_cfg.layer_decay_rate must be in (0, 1], '
                             f'got {rate!r}')

    @staticmethod
    def _layer_depth_fn(model: nn.Module) -> Callable[[str], Tuple[int, int]]:
        if hasattr(model, 'get_layer_depth'):
            return model.get_layer_depth
        backbone = getattr(model, 'backbone', None)
        if backbone is not None and hasattr(backbone, 'get_layer_depth'):
            return lambda name: backbone.get_layer_depth(name, 'backbone.')
        raise TypeError(
            f'{type(model).__name__} has no get_layer_depth(), nor a backbone with one, '
            'so layer-wise learning-rate decay cannot be applied.')

    def _custom_mults(self, name: str) -> Tuple[float, float]:
        custom_keys: Dict[str, dict] = self.paramwise_cfg.get('custom_keys', {})
        for key in sorted(custom_keys, key=len, reverse=True):
            if key in name:
                cfg = custom_keys[key]
                return cfg.get('lr_mult', 1.), cfg.get('decay_mult', 1.)
        return 1., 1.

    def add_params(self,
                   params: List[dict],
                   module: nn.Module,
                   prefix: str = '',
                   is_dcn_module: Optional[int] = None) -> None:
        """Fill ``params`` with one parameter group per (layer, lr, weight decay)."""
        depth_of = self._layer_depth_fn(module)
        rate = self.paramwise_cfg['layer_decay_rate']
        norm_params = {
            id(p)
            for m in module.modules() if isinstance(m, NORM_TYPES)
            for p in m.parameters(recurse=False)
        }
        groups: Dict[tuple, dict] = {}
        for name, param in module.named_parameters(prefix=prefix.rstrip('.')):
            if not param.requires_grad:
                continue
            layer_id, num_layers = depth_of(name)
            if not 0 <= layer_id < num_layers:
                raise ValueError(f'get_layer_depth({name!r}) returned layer {layer_id} '
                                 f'outside [0, {num_layers})')
            decay_mult = 1.
            if id(param) in norm_params:
                decay_mult = self.paramwise_cfg.get('norm_decay_mult', 1.)
            elif name.endswith('.bias'):
                decay_mult = self.paramwise_cfg.get('bias_decay_mult', 1.)
            elif param.ndim == 1:
                decay_mult = self.paramwise_cfg.get('flat_decay_mult', 1.)
            lr_mult, custom_decay = self._custom_mults(name)
            lr_scale = rate**(num_layers - 1 - layer_id) * lr_mult
            key = (layer_id, lr_scale, decay_mult * custom_decay)
            if key not in groups:
                group = dict(params=[], param_names=[], layer_id=layer_id, lr_scale=lr_scale)
                if self.base_lr is not None:
                    group['lr'] = self.base_lr * lr_scale
                if self.base_wd is not None:
                    group['weight_decay'] = self.base_wd * decay_mult * custom_decay
                groups[key] = group
            groups[key]['params'].append(param)
            groups[key]['param_names'].append(name)

        params.extend(groups[k] for k in sorted(groups, key=lambda k: (k[0], k[1], k[2])))
        summary = ', '.join(f"layer {g['layer_id']}: lr x{g['lr_scale']:.3g} "
                            f"wd {g.get('weight_decay', 0):.3g} ({len(g['params'])})"
                            for g in params)
        print_log(f'Layer-wise lr decay {rate}: {summary}', logger='current')

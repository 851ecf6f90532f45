# Copyright (c) mmevo contributors. All rights reserved.
"""What a benchmark variant runs: the model and one inference or training step.

The model is the config's (through :func:`mmevo.utils.flops.build_model_from_cfg`, so every
mmpretrain, mmdet or mmseg config of any backbone family), optionally with the backbone's
reference formulation (:func:`mmevo.testing.as_reference`), or ``FACTORY()`` of an
``external=MODULE:FACTORY`` implementation (an ``nn.Module`` classifier taking a batch and
returning logits) timed on the same harness.
"""
import argparse
import contextlib
import importlib
import sys
from typing import Callable, List, NamedTuple

#: Tensor dtypes of a run: fp32, autocast to bfloat16, or autocast to float16 on CUDA
#: (bfloat16 on CPU) with a gradient scaler.
DTYPES = ('fp32', 'bf16', 'amp')
MODES = ('forward', 'train')


class Workload(NamedTuple):
    """A built variant: ``step()`` runs one iteration, ``sync()`` waits for the device and
    ``info`` describes what was built (result fields)."""
    step: Callable[[], None]
    sync: Callable[[], None]
    info: dict


def autocast(device, dtype: str):
    """The autocast context of ``dtype`` on ``device`` (none for fp32)."""
    import torch
    if dtype == 'fp32':
        return contextlib.nullcontext()
    if dtype == 'bf16' or device.type != 'cuda':
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return torch.autocast(device_type=device.type, dtype=torch.float16)


def flatten_tensors(obj) -> list:
    """The tensors of a nested tuple/list/dict output, in order."""
    import torch
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = list(obj.values())
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in flatten_tensors(o)]
    return []


def num_classes(cfg) -> int:
    """Classes of random labels: the config's head's ``num_classes``, at most 10."""
    model = cfg.model
    for path in (('head', ), ('roi_head', 'bbox_head'), ('decode_head', )):
        node = model
        for key in path:
            node = node.get(key) if hasattr(node, 'get') else None
            if node is None:
                break
        if isinstance(node, dict) and node.get('num_classes'):
            return min(int(node['num_classes']), 10)
    return 10


def build_external(target: str, pythonpath: List[str]):
    """``FACTORY()`` of ``MODULE:FACTORY`` (``MODULE`` importable from ``pythonpath``)."""
    import torch.nn as nn
    for path in reversed(pythonpath):
        if path not in sys.path:
            sys.path.insert(0, path)
    module_name, factory = target.split(':')
    model = getattr(importlib.import_module(module_name), factory)()
    if not isinstance(model, nn.Module):
        raise TypeError(f'{target} returned {type(model).__name__}, not an nn.Module')
    return model


def fuse_model(model) -> bool:
    """Call ``fuse()`` of the model, or of its direct children (backbone, head); True if any."""
    if callable(getattr(model, 'fuse', None)):
        model.fuse()
        return True
    found = False
    for child in model.children():
        if callable(getattr(child, 'fuse', None)):
            child.fuse()
            found = True
    return found


def build_optimizer(cfg, module, backbone_only: bool):
    """The config's optimizer (param-wise settings included) and gradient clipping.

    Returns ``(optimizer, clip_grad, source)``, ``source`` being ``'config'``, or ``'AdamW'``
    where the config has none or (backbone only) its constructor does not fit the module.
    """
    import torch
    from mmengine.optim import build_optim_wrapper

    wrapper_cfg = cfg.get('optim_wrapper')
    clip = None
    if wrapper_cfg is not None:
        wrapper_cfg = wrapper_cfg.copy()
        wrapper_cfg['type'] = 'OptimWrapper'  # autocast / scaling are done here
        wrapper_cfg.pop('loss_scale', None)
        clip = wrapper_cfg.get('clip_grad')
        try:
            return build_optim_wrapper(module, wrapper_cfg).optimizer, clip, 'config'
        except Exception as err:  # e.g. a constructor that expects the whole model
            if not backbone_only:
                raise
            print(f'[benchmark] config optimizer does not fit the backbone ({err}); '
                  'using AdamW', file=sys.stderr)
    return torch.optim.AdamW(module.parameters(), lr=1e-4, weight_decay=0.05), clip, 'AdamW'


def graph_breaks() -> dict:
    """``torch.compile`` graph breaks so far: their number and the first ten reasons."""
    from torch._dynamo.utils import counters
    breaks = counters.get('graph_break', {})
    return dict(
        graph_breaks=int(sum(breaks.values())),
        graph_break_reasons=[str(k)[:300] for k in list(breaks)[:10]])


def load_config(config: str, cfg_options: List[str]):
    """The config file with ``KEY=VALUE`` overrides (``--cfg-options`` syntax) merged."""
    from mmengine.config import Config, DictAction

    cfg = Config.fromfile(config)
    if cfg_options:
        opt_parser = argparse.ArgumentParser()
        opt_parser.add_argument('--o', nargs='+', action=DictAction)
        cfg.merge_from_dict(opt_parser.parse_args(['--o', *cfg_options]).o)
    return cfg


def prepare(spec: dict) -> Workload:
    """Build the variant of ``spec`` and its step for ``spec['mode']``.

    ``spec`` holds the run settings of :func:`mmevo.benchmarking.runner.base_run`. Forward
    runs ``torch.inference_mode()`` in eval mode; a training step is forward, loss, backward
    and the config's optimizer step with its gradient clipping (backbone only: the sum of the
    outputs as loss; external model: cross-entropy on random labels).
    """
    import torch
    import torch.nn.functional as F

    import mmevo  # noqa: F401  (mmevo:: config prefix, safe loading)
    from mmevo.utils.flops import (
        build_model_from_cfg,
        config_input_size,
        count_params,
        fake_data_samples,
    )

    if spec['threads']:
        torch.set_num_threads(spec['threads'])
    device = torch.device(spec['device'])
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError('--device cuda but torch.cuda.is_available() is False')

    options = list(spec['cfg_options'])
    if spec['with_cp']:
        options.append('model.backbone.with_cp=True')
    cfg = load_config(spec['config'], options)
    scope = cfg.get('default_scope')
    backbone_only = spec['backbone_only']
    train = spec['mode'] == 'train'

    torch.manual_seed(0)
    external = spec.get('external')
    if external:
        if spec.get('reference') or spec['with_cp'] or spec.get('fuse'):
            raise ValueError('an external model has no reference, with_cp or fuse() variant')
        model = build_external(external, spec.get('pythonpath', []))
        backbone_only = False
    else:
        model = build_model_from_cfg(cfg, backbone_only=backbone_only)
    plain_call = backbone_only or bool(external)  # model(x), not a task model
    params = count_params(model)
    shape = spec['shape'] or config_input_size(cfg)
    if len(shape) == 1:
        shape = (shape[0], shape[0])
    height, width = shape
    batch = spec['batch_size']
    backbone = model if plain_call else model.backbone
    in_channels = getattr(backbone, 'in_channels', 3)
    # None: the model's own layout (mmevo backbones convert to channels-last themselves)
    memory_format = {True: torch.channels_last, False: torch.contiguous_format}.get(
        spec['channels_last'])

    if spec.get('reference'):
        from mmevo.testing import as_reference
        if spec['with_cp'] or spec.get('fuse'):
            raise ValueError('the reference formulation has neither with_cp nor fuse()')
        if backbone_only:
            model = as_reference(model)
        else:
            model.backbone = as_reference(model.backbone)
    fused = bool(spec.get('fuse')) and not train and fuse_model(model)
    model = model.to(device=device)
    if memory_format is not None:
        model = model.to(memory_format=memory_format)
    model.train(train)
    x = torch.randn(batch, in_channels, height, width, device=device)
    if memory_format is not None:
        x = x.contiguous(memory_format=memory_format)
    samples = None if plain_call else fake_data_samples(
        scope, batch, height, width, with_labels=train, num_classes=num_classes(cfg),
        device=device)
    labels = torch.randint(0, num_classes(cfg), (batch, ), device=device) \
        if external and train else None

    macs = None
    if spec.get('roofline') and not train:
        from .roofline import forward_macs
        macs = forward_macs(model, x, scope, task_model=not plain_call)

    if spec['compile']:
        import torch._dynamo
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        if plain_call:
            model = torch.compile(model)
        else:
            model.backbone = torch.compile(model.backbone)

    amp = autocast(device, spec['dtype'])
    if train:
        optimizer, clip, optimizer_source = build_optimizer(cfg, model, plain_call)
        use_scaler = spec['dtype'] == 'amp' and device.type == 'cuda'
        scaler = torch.amp.GradScaler('cuda') if use_scaler else None
        max_norm = clip.get('max_norm') if isinstance(clip, dict) else None

        def step():
            with amp:
                if external:
                    loss = F.cross_entropy(model(x).float(), labels, label_smoothing=0.1)
                elif backbone_only:
                    loss = sum(t.float().sum() for t in flatten_tensors(model(x)))
                else:
                    loss, _ = model.parse_losses(model(x, samples, mode='loss'))
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if max_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    else:
        optimizer_source = None

        def step():
            with torch.inference_mode(), amp:
                if plain_call:
                    model(x)
                else:
                    model(x, samples, mode='tensor')

    def sync():
        if device.type == 'cuda':
            torch.cuda.synchronize(device)

    info = dict(
        shape=[height, width],
        scope=scope,
        params=params,
        threads_used=torch.get_num_threads(),
        optimizer=optimizer_source,
        fused=fused)
    if macs is not None:
        info['macs_per_image'] = macs
    return Workload(step, sync, info)

# Copyright (c) mmevo contributors. All rights reserved.
"""Parameters and FLOPs of mmevo models the way the papers count them.

FLOPs are multiply-adds (1 MAC = 1 FLOP), counted by tracing one forward with
:class:`mmengine.analysis.FlopAnalyzer` (MMEngine's port of fvcore's ``FlopCountAnalysis``, the
counter behind the published EATFormer classification table) plus handles for the ops fvcore
cannot see in mmevo's models:

* ``aten::scaled_dot_product_attention`` (and the fused CPU/CUDA kernels a trace may show):
  ``q @ k^T`` and ``attn @ v`` as fvcore's ``matmul`` handle counts them,
  ``B*h*Nq*Nk*dh + B*h*Nq*Nk*dh_v``; softmax and scaling are not counted, as in fvcore;
* ``aten::grid_sampler``: 4 per output element (fvcore's bilinear rule; 1 for nearest, 16 for
  bicubic);
* deformable convolutions (mmcv's ``ModulatedDeformConv2dFunction`` / ``DeformConv2dFunction``
  and ``torchvision::deform_conv2d``): the convolution's MACs (``deform_conv``) plus 4 per
  bilinearly sampled input value (``deform_sampling``).

Two totals are reported:

* ``flops``: everything above, the convention of the published *classification* numbers
  (fvcore, attention matrix products included);
* ``flops_without_attention``: without functional matrix products (``scaled_dot_product_attention``,
  ``matmul``, ``bmm``, ``mm``, ``einsum``) and without sampling (``grid_sampler``,
  ``deform_sampling``): what mmcv's module-hook counter sees, the convention of the published
  EATFormer *detection/segmentation* numbers (see the spec's "published vs measured" notes).

Element-wise ops (activations, additions, softmax, pooling other than adaptive average pooling)
count zero, as in fvcore; BatchNorm in eval mode counts 2 per element (fvcore).

A third convention is ml-cvnets' module profiler (:func:`cvnets_profiler_macs`), which produced the
published EdgeFormer / ParC-Net "MAdds" (1.74 G for EdgeFormer-S at 256x256): convolutions and
linear layers with their bias additions, nothing for BatchNorm, activations and pooling, and the
GCC block by the official analytic formula, whose channel attention is counted at every pixel on
the FFN width (it runs once per image on the block width).
"""
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn

#: Op key (in ``by_operator``) of the matrix products inside scaled-dot-product attention.
ATTENTION_KEY = 'attention_matmul'
#: Traced op names of scaled-dot-product attention (the composite op and the fused kernels).
SDPA_OPS = (
    'aten::scaled_dot_product_attention',
    'aten::_scaled_dot_product_attention_math',
    'aten::_scaled_dot_product_flash_attention',
    'aten::_scaled_dot_product_flash_attention_for_cpu',
    'aten::_scaled_dot_product_efficient_attention',
    'aten::_scaled_dot_product_cudnn_attention',
    'aten::_scaled_dot_product_fused_attention_overrideable',
)
GRID_SAMPLER_OPS = ('aten::grid_sampler', 'aten::grid_sampler_2d')
#: Op keys left out of ``flops_without_attention`` (functional matrix products and sampling:
#: what a module-hook counter such as mmcv's ``get_model_complexity_info`` cannot see).
UNHOOKED_KEYS = frozenset(
    {ATTENTION_KEY, 'matmul', 'bmm', 'mm', 'einsum', 'grid_sampler', 'deform_sampling'})
#: Default input ``(H, W)`` per task scope: mmpretrain 224x224; mmdet 800x1280 and mmseg
#: 512x2048, the shapes the published EATFormer downstream FLOPs use.
DEFAULT_SHAPES = {'mmpretrain': (224, 224), 'mmdet': (800, 1280), 'mmseg': (512, 2048)}


def _shape(value: Any) -> Optional[List[int]]:
    """Sizes of a traced tensor value, ``None`` for a non-tensor or an incomplete type."""
    if value.type().kind() != 'TensorType' or not value.isCompleteTensor():
        return None
    return list(value.type().sizes())


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> Counter:
    """``scaled_dot_product_attention(q, k, v)``: ``q @ k^T`` plus ``attn @ v`` multiply-adds.

    ``q: (..., Nq, dh)``, ``k: (..., Nk, dh)``, ``v: (..., Nk, dh_v)``; the leading dims of
    ``q`` (batch, heads) give the number of attention maps (also with grouped-query attention).
    """
    q, k, v = (_shape(x) for x in inputs[:3])
    maps = math.prod(q[:-2])
    nq, dh, nk, dh_v = q[-2], q[-1], k[-2], v[-1]
    return Counter({ATTENTION_KEY: maps * nq * nk * (dh + dh_v)})


def grid_sampler_flop_jit(inputs: List[Any], outputs: List[Any]) -> Counter:
    """``grid_sample``: 4 per output element for bilinear (fvcore), 1 nearest, 16 bicubic."""
    mode = inputs[2].toIValue() if len(inputs) > 2 else 0
    per_output = {0: 4, 1: 1, 2: 16}.get(mode, 4)
    return Counter({'grid_sampler': per_output * math.prod(_shape(outputs[0]))})


def _deform_conv_counts(x_shape: Sequence[int], w_shape: Sequence[int],
                        out_shape: Sequence[int]) -> Counter:
    """A deformable convolution: conv MACs + bilinear sampling of every input column value."""
    batch, cin = x_shape[:2]
    kernel_area = math.prod(w_shape[2:])
    out_area = math.prod(out_shape[2:])
    conv = math.prod(out_shape) * w_shape[1] * kernel_area
    sampled = batch * cin * kernel_area * out_area
    return Counter({'deform_conv': conv, 'deform_sampling': 4 * sampled})


def mmcv_deform_conv_flop_handle(num_leading: int):
    """Handle of mmcv's deformable conv autograd Functions (traced as ``prim::PythonOp``).

    Args:
        num_leading (int): Tensor inputs before the weight: 2 (``input, offset``) for
            ``DeformConv2dFunction``, 3 (``input, offset, mask``) for the modulated one.
    """

    def handle(inputs: List[Any], outputs: List[Any]) -> Counter:
        shapes = [s for s in (_shape(v) for v in inputs) if s is not None]
        return _deform_conv_counts(shapes[0], shapes[num_leading], _shape(outputs[0]))

    return handle


def torchvision_deform_conv_flop_jit(inputs: List[Any], outputs: List[Any]) -> Counter:
    """``torchvision::deform_conv2d(input, weight, offset, mask, bias, ...)``."""
    return _deform_conv_counts(_shape(inputs[0]), _shape(inputs[1]), _shape(outputs[0]))


def extra_flop_handles() -> Dict[str, Any]:
    """Handles mmevo adds to MMEngine's (fvcore's) default ones."""
    handles: Dict[str, Any] = {name: sdpa_flop_jit for name in SDPA_OPS}
    handles.update({name: grid_sampler_flop_jit for name in GRID_SAMPLER_OPS})
    handles['prim::PythonOp.ModulatedDeformConv2dFunction'] = mmcv_deform_conv_flop_handle(3)
    handles['prim::PythonOp.DeformConv2dFunction'] = mmcv_deform_conv_flop_handle(2)
    handles['torchvision::deform_conv2d'] = torchvision_deform_conv_flop_jit
    return handles


@dataclass
class Complexity:
    """Parameters and FLOPs of a model for one input.

    Attributes:
        params (int): Parameters (``sum(p.numel() for p in model.parameters())``).
        flops (int): All multiply-adds, attention matrix products and sampling included.
        flops_without_attention (int): ``flops`` minus functional matrix products and sampling
            (the keys in :data:`UNHOOKED_KEYS`).
        by_operator (dict): FLOPs per op key (``conv``, ``batch_norm``, ``attention_matmul``,
            ``grid_sampler``, ``linear``, ...).
        uncounted_ops (dict): Traced ops counted as zero (element-wise ops), with their counts.
        input_shape (tuple): The input, ``(N, C, H, W)``.
        by_module (dict): FLOPs per module name (``''`` is the whole model).
    """
    params: int
    flops: int
    flops_without_attention: int
    by_operator: Dict[str, int]
    uncounted_ops: Dict[str, int]
    input_shape: Tuple[int, ...]
    by_module: Dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def attention_flops(self) -> int:
        return self.flops - self.flops_without_attention

    def to_dict(self, with_modules: bool = False) -> dict:
        out = asdict(self)
        if not with_modules:
            out.pop('by_module')
        out['attention_flops'] = self.attention_flops
        return out


def count_params(model: nn.Module) -> int:
    """Parameters of ``model``, each shared tensor once (``model.parameters()`` semantics)."""
    return sum(p.numel() for p in model.parameters())


def analyze_flops(model: nn.Module,
                  inputs: Union[torch.Tensor, Tuple[torch.Tensor, ...]],
                  with_modules: bool = False):
    """Trace ``model(*inputs)`` once and count its FLOPs.

    Args:
        model (nn.Module): The model, normally in eval mode (BatchNorm then counts 2 per element,
            as in fvcore's numbers).
        inputs (Tensor | tuple[Tensor]): Positional inputs of ``model.forward``.
        with_modules (bool): Also collect FLOPs per module. Defaults to False.

    Returns:
        tuple[Complexity, FlopAnalyzer]: The counts and the analyzer (for
        :func:`mmengine.analysis.flop_count_table` and per-module queries).
    """
    from mmengine.analysis import FlopAnalyzer

    if isinstance(inputs, torch.Tensor):
        inputs = (inputs, )
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.set_op_handle(**extra_flop_handles())
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    with torch.no_grad():
        by_operator = {k: int(v) for k, v in analyzer.by_operator().items()}
    total = sum(by_operator.values())
    unhooked = sum(v for k, v in by_operator.items() if k in UNHOOKED_KEYS)
    shape = tuple(inputs[0].shape)
    result = Complexity(
        params=count_params(model),
        flops=total,
        flops_without_attention=total - unhooked,
        by_operator=dict(sorted(by_operator.items(), key=lambda kv: -kv[1])),
        uncounted_ops=dict(analyzer.unsupported_ops().most_common()),
        input_shape=shape,
        by_module={k: int(v) for k, v in analyzer.by_module().items()} if with_modules else {})
    return result, analyzer


# --------------------------------------------------------------------------------------------
# Models from configs
# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# ml-cvnets' profiler convention (EdgeFormer / ParC-Net papers)
# --------------------------------------------------------------------------------------------


def _conv_madds(m: nn.Conv2d, x: torch.Tensor, y: torch.Tensor) -> int:
    out = y[0, 0].numel()
    macs = math.prod(m.kernel_size) * m.in_channels * m.out_channels * out // m.groups
    bias = m.out_channels * out if m.bias is not None else 0
    return y.shape[0] * (macs + bias)


def _linear_madds(m: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> int:
    rows = x.numel() // m.in_features
    return rows * (m.in_features * m.out_features + (m.out_features if m.bias is not None else 0))


def _gcc_block_madds(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    # ml-cvnets ``outer_frame_v1.profile_module``: the four circular convolutions (both halves,
    # one kernel as long as each axis), the FFN with its bias additions, and the channel
    # attention counted per pixel with the FFN width as if it were a 1x1 convolution pair
    n, c, h, w = x.shape
    f = m.ffn_channels
    spatial = c * h * w * (h + w)
    if m.gcc_1_h.bias is not None:
        spatial += 2 * c * h * w
    ffn = (2 * c * f + c + f) * h * w
    attention = 2 * f * (f // 16) * h * w
    return n * (spatial + ffn + attention)


def _circular_conv_madds(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    # a depth-wise convolution whose kernel is as long as the axis
    return y.numel() * (x.shape[m.dim] + (1 if m.bias is not None else 0))


def cvnets_rules() -> Dict[type, Any]:
    """Module type -> ``count(module, input, output)`` of the ml-cvnets convention; a module with
    a rule is counted whole (its sub-modules are not visited)."""
    from mmevo.models.layers.gcc import GCCBlock, GlobalCircularConv
    return {nn.Conv2d: _conv_madds, nn.Linear: _linear_madds, GCCBlock: _gcc_block_madds,
            GlobalCircularConv: _circular_conv_madds}


def cvnets_profiler_macs(model: nn.Module, inputs: Union[torch.Tensor, Tuple]) -> int:
    """Multiply-adds of one forward as ml-cvnets' ``profile_model`` counts them.

    The convention of the published EdgeFormer / ParC-Net numbers: ``k_h * k_w * C_in * C_out *
    H_out * W_out / groups`` per convolution plus one addition per output for a bias, ``in * out
    (+ out)`` per row of a linear layer, zero for BatchNorm, activations, pooling, position
    embeddings and kernel resizing, and a GCC block by the official formula (see the module
    docstring). The model runs once with mmevo's plain ops (fused kernels would bypass the
    module hooks).

    Args:
        model (nn.Module): Any model; modules are matched by :func:`cvnets_rules`.
        inputs (Tensor | tuple[Tensor]): Positional inputs of ``model.forward``.
    """
    from mmevo.models.layers import plain_ops
    rules = cvnets_rules()
    counted: Dict[int, int] = {}
    inside = set()
    for parent in model.modules():
        if any(isinstance(parent, t) for t in rules):
            inside.update(id(m) for m in parent.modules() if m is not parent)

    def hook(module, args, output):
        if id(module) in inside or not args or not torch.is_tensor(args[0]):
            return
        for cls, rule in rules.items():
            if isinstance(module, cls):
                counted[id(module)] = counted.get(id(module), 0) + rule(module, args[0], output)
                return

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad(), plain_ops():
            model(*(inputs if isinstance(inputs, tuple) else (inputs, )))
    finally:
        for handle in handles:
            handle.remove()
    return int(sum(counted.values()))


def build_model_from_cfg(cfg, backbone_only: bool = False) -> nn.Module:
    """Build ``cfg.model`` of any mmevo config (mmpretrain, mmdet or mmseg) for analysis.

    The config's default scope is made current first. SyncBN becomes BN
    (``revert_sync_batchnorm``), no pre-trained weights are loaded (``init_weights`` is not
    called and mmseg's ``model.pretrained`` is dropped), and the model is in eval mode.

    Args:
        cfg (mmengine.Config): The config.
        backbone_only (bool): Return ``model.backbone`` only. Defaults to False.
    """
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS

    import mmevo  # noqa: F401  (mmevo:: config prefix, safe loading)
    from .setup_env import setup_default_scope

    setup_default_scope(cfg)
    model_cfg = cfg.model.copy()
    if model_cfg.get('pretrained') is not None:
        model_cfg['pretrained'] = None
    model = MODELS.build(model_cfg)
    model = revert_sync_batchnorm(model)
    if backbone_only:
        if not hasattr(model, 'backbone'):
            raise ValueError(f'{type(model).__name__} has no backbone; drop --backbone-only')
        model = model.backbone
    return model.eval()


def default_input_shape(scope: Optional[str]) -> Tuple[int, int]:
    """``(H, W)`` used when none is given: see :data:`DEFAULT_SHAPES`."""
    return DEFAULT_SHAPES.get(scope or '', (224, 224))


def config_input_size(cfg) -> Tuple[int, int]:
    """``(H, W)`` a config's model sees: the test pipeline's center crop (or resize) for
    classification configs (e.g. 384 for a ``-384px`` config), :func:`default_input_shape`
    otherwise. The default input of get_flops.py, benchmark.py and pytorch2onnx.py."""
    scope = cfg.get('default_scope')
    if scope == 'mmpretrain':
        pipeline = cfg.get('test_dataloader', {}).get('dataset', {}).get('pipeline', [])
        for kind, key in (('CenterCrop', 'crop_size'), ('Resize', 'scale')):
            for step in pipeline:
                size = step.get(key) if step.get('type', '').endswith(kind) else None
                if isinstance(size, int):
                    return size, size
                if isinstance(size, (list, tuple)) and len(size) == 2:
                    return int(size[1]), int(size[0])  # mmcv sizes are (w, h)
    return default_input_shape(scope)


def fake_data_samples(scope: Optional[str], batch_size: int, height: int, width: int,
                      with_labels: bool = False, num_classes: int = 10,
                      device: Union[str, torch.device] = 'cpu') -> Optional[list]:
    """Data samples a task model needs besides the images, built without a dataset.

    Meta information only (``img_shape``, ``pad_shape``, ...), or, with ``with_labels``, random
    ground truth for a training step: a class label (mmpretrain), two boxes with masks
    (mmdet), or a segmentation map (mmseg). Returns ``None`` for other scopes.
    """
    shape = (height, width)
    meta = dict(img_shape=shape, ori_shape=shape, pad_shape=shape, batch_input_shape=shape,
                scale_factor=(1., 1.))
    gen = torch.Generator().manual_seed(0)
    samples = []
    if scope == 'mmpretrain':
        from mmpretrain.structures import DataSample
        for _ in range(batch_size):
            sample = DataSample(metainfo=dict(img_shape=shape, ori_shape=shape))
            if with_labels:
                sample.set_gt_label(int(torch.randint(num_classes, (1, ), generator=gen)))
            samples.append(sample)
        return samples
    if scope == 'mmdet':
        import numpy as np
        from mmdet.structures import DetDataSample
        from mmdet.structures.mask import BitmapMasks
        from mmengine.structures import InstanceData
        for _ in range(batch_size):
            sample = DetDataSample(metainfo=meta)
            if with_labels:
                xy = torch.rand(2, 2, generator=gen) * torch.tensor([width / 2, height / 2])
                wh = (0.2 + 0.3 * torch.rand(2, 2, generator=gen)) * torch.tensor(
                    [width, height])
                boxes = torch.cat([xy, xy + wh], dim=1)
                masks = np.zeros((2, height, width), dtype=np.uint8)
                for m, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
                    m[y1:y2, x1:x2] = 1
                sample.gt_instances = InstanceData(
                    bboxes=boxes.to(device),
                    labels=torch.randint(num_classes, (2, ), generator=gen).to(device),
                    masks=BitmapMasks(masks, height, width))
            samples.append(sample)
        return samples
    if scope == 'mmseg':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        for _ in range(batch_size):
            sample = SegDataSample(metainfo=meta)
            if with_labels:
                seg = torch.randint(num_classes, (1, height, width), generator=gen)
                sample.gt_sem_seg = PixelData(data=seg.to(device))
            samples.append(sample)
        return samples
    return None


class TensorModeModel(nn.Module):
    """``model(x, data_samples, mode='tensor')`` as a one-tensor module, for tracing.

    Module names inside keep the ``model.`` prefix.
    """

    def __init__(self, model: nn.Module, data_samples: Optional[list]):
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, x: torch.Tensor):
        return self.model(x, self.data_samples, mode='tensor')


class MMDet2DummyForward(nn.Module):
    """The forward mmdet 2.x's ``get_flops.py`` counted for a two-stage detector
    (``forward_dummy``): backbone, neck and RPN head, then every box head on
    ``num_proposals`` proposals and every mask head on the first ``num_mask_rois`` of them (a
    cascade's stages all on the same RoIs), whatever the RPN proposes. The convention of the
    published mmdet 2.x detector FLOPs (Swin, DWNet); mmdet 3.x's ``mode='tensor'`` runs the RoI
    heads on the RPN's proposals instead, masks included (1000 mask RoIs: ~3x the mask head FLOPs
    of a Cascade Mask R-CNN at 800x1280).

    Module names inside keep the ``model.`` prefix. RoIAlign itself counts zero (as in both
    conventions).
    """

    def __init__(self, model: nn.Module, num_proposals: int = 1000, num_mask_rois: int = 100):
        super().__init__()
        if not (hasattr(model, 'roi_head') and hasattr(model, 'rpn_head')):
            raise ValueError(f'the mmdet2 RoI convention is for two-stage detectors; '
                             f'{type(model).__name__} has no rpn_head / roi_head')
        self.model = model
        self.num_proposals = num_proposals
        self.num_mask_rois = num_mask_rois

    def forward(self, x: torch.Tensor):
        model = self.model
        feats = model.extract_feat(x)
        outs = [model.rpn_head(feats)]
        # boxes in the image (their values do not change the counts)
        corners = torch.rand(2, self.num_proposals, 2, generator=torch.Generator().manual_seed(0))
        corners = corners.to(x) * x.new_tensor([x.shape[-1], x.shape[-2]]) / 2
        rois = torch.cat([x.new_zeros(self.num_proposals, 1), corners[0], corners.sum(0)], 1)
        head = model.roi_head
        stages = [(s, ) for s in range(head.num_stages)] if hasattr(head, 'num_stages') \
            else [()]
        for stage in stages:
            if head.with_bbox:
                box = head._bbox_forward(*stage, feats, rois)
                outs += [box['cls_score'], box['bbox_pred']]  # unused outputs are not traced
            if head.with_mask:
                outs.append(head._mask_forward(*stage, feats,
                                               rois[:self.num_mask_rois])['mask_preds'])
        return outs


def get_model_complexity(cfg,
                         shape: Optional[Sequence[int]] = None,
                         backbone_only: bool = False,
                         batch_size: int = 1,
                         with_modules: bool = False,
                         det_rois: str = 'proposals'):
    """Params and FLOPs of a config's model for a synthetic input (no dataset needed).

    Detectors and segmentors run in ``mode='tensor'`` (mmdet: RPN + RoI heads on the RPN
    proposals; mmseg: the decode heads) with data samples that carry only the image meta data.

    Args:
        cfg (mmengine.Config): The config.
        shape (Sequence[int], optional): ``(H, W)``; a single int means square. Defaults to
            :func:`config_input_size`.
        backbone_only (bool): Count ``model.backbone`` only.
        batch_size (int): Input batch. Defaults to 1 (as the papers count).
        with_modules (bool): Also collect FLOPs per module.
        det_rois (str): Two-stage detectors: ``'proposals'`` (mmdet 3.x ``mode='tensor'``, RoI
            heads on the RPN's proposals) or ``'mmdet2'`` (:class:`MMDet2DummyForward`: 1000
            proposals, masks on 100, the published mmdet 2.x numbers).

    Returns:
        tuple[Complexity, FlopAnalyzer, nn.Module]: counts, analyzer and the analysed module.
    """
    if det_rois not in ('proposals', 'mmdet2'):
        raise ValueError(f"det_rois must be 'proposals' or 'mmdet2', got {det_rois!r}")
    scope = cfg.get('default_scope')
    model = build_model_from_cfg(cfg, backbone_only)
    if shape is None:
        shape = config_input_size(cfg)
    elif len(shape) == 1:
        shape = (shape[0], shape[0])
    height, width = shape
    in_channels = getattr(model if backbone_only else getattr(model, 'backbone', model),
                          'in_channels', 3)
    x = torch.randn(batch_size, in_channels, height, width,
                    generator=torch.Generator().manual_seed(0))
    if det_rois == 'mmdet2' and not backbone_only:
        result, analyzer = analyze_flops(MMDet2DummyForward(model), x, with_modules)
        return result, analyzer, model
    return analyze_task_model(model, x, scope, not backbone_only, with_modules)


def analyze_task_model(model: nn.Module,
                       x: torch.Tensor,
                       scope: Optional[str],
                       task_model: bool = True,
                       with_modules: bool = False):
    """:func:`analyze_flops` of ``model`` on the batch ``x``: a task model (``task_model``)
    runs in ``mode='tensor'`` with the meta-only data samples of its ``scope``; otherwise
    ``model(x)`` is traced as it is (a backbone or a plain classifier).

    Returns:
        tuple[Complexity, FlopAnalyzer, nn.Module]: counts, analyzer and the analysed module.
    """
    if task_model:
        model = TensorModeModel(model, fake_data_samples(scope, x.shape[0], *x.shape[-2:],
                                                         device=x.device))
    result, analyzer = analyze_flops(model, x, with_modules=with_modules)
    return result, analyzer, model


def format_count(value: float, unit: str = 'G') -> str:
    scale = {'G': 1e9, 'M': 1e6, 'K': 1e3}[unit]
    return f'{value / scale:.3f} {unit}'

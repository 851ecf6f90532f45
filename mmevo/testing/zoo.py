# Copyright (c) mmevo contributors. All rights reserved.
"""The model zoo as test data: one :class:`ZooEntry` per backbone family.

The conformance matrix (``tests/test_zoo.py``), the bad-input suite and the config tests iterate
over :data:`ZOO`; a new family adds its entry here (and nothing to those tests). Every backbone
registered in mmevo's MODELS registry must have an entry (a test checks it).
"""
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

Size = Tuple[int, int]


@dataclass
class BadInput:
    """A constructor argument (or arch-dict value) that must be refused with a clear error.

    Args:
        kwargs (dict): Constructor keyword arguments; ``arch`` may be a callable of the parsed
            settings of the entry's test arch returning a bad custom arch dict.
        error (type): The exception type expected.
        match (str): A regex the message must contain (the argument's name, the value...).
    """
    kwargs: Dict[str, Any]
    error: type
    match: str


@dataclass
class ZooEntry:
    """What the conformance tests need to know about one backbone family.

    Args:
        backbone (str): Class name in ``mmevo.registry.MODELS``.
        archs (tuple[str]): Canonical names of the published archs (no aliases).
        narrow (callable): ``narrow(settings) -> dict``: a custom arch dict of the same structure
            as the parsed ``settings`` (same ops, windows, modes) but few and narrow blocks,
            so a big arch is checked in seconds.
        full_width_archs (tuple[str]): Archs small enough to check as published on CI.
        input_size (tuple): Native classification input (H, W).
        odd_size (tuple): An odd, non-square input for the dense configuration.
        dense_kwargs (dict): Constructor kwargs of the dense (detection / segmentation)
            configuration, beside ``out_indices``.
        odd_size_error (callable, optional): ``settings -> regex or None``: for archs that
            cannot take ``odd_size`` by design, the error message expected instead.
        default_kwargs (dict): Extra kwargs for every build in the tests.
        bad_inputs (list[BadInput]): Family-specific arguments that must be refused.
        convert_family (str): Name of the family's converter in the converter registry.
        small_input (tuple): Input of the narrowed archs in the fast checks.
        depth_key (str): The arch key holding the number of blocks (per stage, or an int).
    """
    backbone: str
    archs: Tuple[str, ...]
    narrow: Callable[[dict], dict]
    full_width_archs: Tuple[str, ...] = ()
    input_size: Size = (224, 224)
    odd_size: Size = (199, 263)
    dense_kwargs: Dict[str, Any] = field(default_factory=dict)
    odd_size_error: Optional[Callable[[dict], Optional[str]]] = None
    default_kwargs: Dict[str, Any] = field(default_factory=dict)
    bad_inputs: List[BadInput] = field(default_factory=list)
    convert_family: str = ''
    small_input: Size = (64, 96)
    depth_key: str = 'depths'

    @property
    def cls(self):
        from mmevo.registry import MODELS
        return MODELS.get(self.backbone)

    def tiny(self, arch: str) -> dict:
        """The narrowed custom arch of ``arch``."""
        return self.narrow(self.cls.parse_arch(arch))

    def build(self, arch, **kwargs):
        """The backbone with ``arch`` (a name or dict) and ``kwargs`` over the defaults."""
        return self.cls(arch=arch, **{**self.default_kwargs, **kwargs})


def _narrow_eatformer(s: dict) -> dict:
    width = [16, 32, 32, 64]
    return dict(
        depths=[1, 1, 2, 1],
        embed_dims=width,
        dim_heads=[8, 8, 8, 8],
        op_names=s['op_names'],
        down_mode=s['down_mode'],
        dilations=s['dilations'],
        window_sizes=s['window_sizes'],
        global_window_periods=s['global_window_periods'],
        mlp_ratio=2.)


def _eatformer_odd_size_error(s: dict) -> Optional[str]:
    return 'multiples of 32' if s['down_mode'] == 'patch' else None


def _bad_eatformer_heads(s: dict) -> dict:
    return dict(_narrow_eatformer(s), dim_heads=[8, 8, 5, 8])


EATFORMER = ZooEntry(
    backbone='EATFormer',
    archs=('mobile', 'lite', 'tiny', 'mini', 'small', 'medium', 'base'),
    narrow=_narrow_eatformer,
    full_width_archs=('mobile', 'tiny'),
    dense_kwargs=dict(window_size=14),
    odd_size_error=_eatformer_odd_size_error,
    convert_family='eatformer',
    bad_inputs=[
        BadInput(dict(arch=_bad_eatformer_heads), ValueError, r"dim_heads'\]\[2\]=5"),
        BadInput(dict(sampler='cuda'), ValueError, r"sampler='cuda'.*one of"),
        BadInput(dict(window_size=[7, 7, 7]), ValueError, r'window_sizes'),
        BadInput(dict(drop_rate=1.0), ValueError, r'drop_rate=1.0'),
    ])


def _narrow_groupmixformer(s: dict) -> dict:
    # widths are multiples of 10 (5 segments, 8 heads on 4/5 of the channels)
    return dict(embed_dims=[20, 30, 40, 60], depths=[1, 1, 2, 1], mlp_ratios=s['mlp_ratios'],
                num_heads=s['num_heads'], crpe_window=s['crpe_window'])


def _bad_groupmixformer_dims(s: dict) -> dict:
    return dict(_narrow_groupmixformer(s), embed_dims=[20, 30, 45, 60])


GROUPMIXFORMER = ZooEntry(
    backbone='GroupMixFormer',
    archs=('mobile', 'tiny', 'small', 'base', 'large'),
    narrow=_narrow_groupmixformer,
    full_width_archs=('mobile', ),
    dense_kwargs=dict(pad_to_multiple=True, out_norm_cfg=dict(type='LN2d', eps=1e-6)),
    convert_family='groupmixformer',
    bad_inputs=[
        BadInput(dict(arch=_bad_groupmixformer_dims), ValueError,
                 r"embed_dims'\]\[2\]=45 must be a multiple of 5 whose attention part"),
        BadInput(dict(arch=lambda s: dict(_narrow_groupmixformer(s), crpe_window={3: 4, 5: 3})),
                 ValueError, r'assigns 7 heads.*num_heads\'\]=8'),
        BadInput(dict(arch=lambda s: dict(_narrow_groupmixformer(s), crpe_window={4: 8})),
                 ValueError, r'crpe_window.*odd kernel sizes'),
        BadInput(dict(pad_to_multiple='yes'), ValueError, r"pad_to_multiple='yes'"),
        BadInput(dict(out_norm_cfg='LN'), ValueError, r"out_norm_cfg='LN'"),
        BadInput(dict(drop_rate=1.0), ValueError, r'drop_rate=1.0'),
    ])


def _narrow_dwnet(s: dict) -> dict:
    return dict(embed_dims=16, depths=[1, 1, 2, 1], window_size=s['window_size'],
                inhomo_heads=[2, 4, 8, 16], mlp_ratio=2.)


DWNET = ZooEntry(
    backbone='DWNet',
    archs=('tiny', 'base'),
    narrow=_narrow_dwnet,
    full_width_archs=('tiny', ),
    # the dynamic model (per-sample kernels) through the matrix; the static one shares the rest
    default_kwargs=dict(dynamic=True),
    dense_kwargs=dict(pad_to_window=True, out_norm_cfg=dict(type='BN')),
    convert_family='dwnet',
    bad_inputs=[
        BadInput(dict(arch=lambda s: dict(_narrow_dwnet(s), window_size=6)), ValueError,
                 r"window_size'\]=6 is out of its domain: a positive odd int"),
        BadInput(dict(arch=lambda s: dict(_narrow_dwnet(s), inhomo_heads=[3, 4, 8, 16]),
                      inhomogeneous=True), ValueError, r"inhomo_heads'\]\[0\]=3 must divide"),
        BadInput(dict(inhomogeneous=True, dynamic=False), ValueError, r'needs dynamic=True'),
        BadInput(dict(arch=lambda s: dict(_narrow_dwnet(s), embed_dims=2)), ValueError,
                 r"embed_dims'\] >= 4"),
        BadInput(dict(pad_to_window='yes'), ValueError, r"pad_to_window='yes'"),
        BadInput(dict(out_norm_cfg='BN'), ValueError, r"out_norm_cfg='BN'"),
        BadInput(dict(drop_rate=1.0), ValueError, r'drop_rate=1.0'),
    ])


def _narrow_eat(s: dict) -> dict:
    # 12 blocks as published (configs tap blocks 3/6/9/12); 48 channels take the class heads
    # of every published size (4, 6, 8, 12)
    return dict(embed_dims=48, depth=s['depth'], num_heads=4, mlp_ratio=1.,
                local_ratio=s['local_ratio'], local_kernel_size=s['local_kernel_size'],
                patch_size=s['patch_size'])


EAT = ZooEntry(
    backbone='EAT',
    archs=('tiny', 'small', 'medium', 'base'),
    narrow=_narrow_eat,
    full_width_archs=('tiny', ),
    # every block is a stage; dense mode pads to the 16x16 patches (the pyramid has its tests)
    dense_kwargs=dict(dense=True),
    convert_family='eat',
    depth_key='depth',
    bad_inputs=[
        BadInput(dict(img_size=200), ValueError, r'img_size=200 must be made of multiples of '
                 r'patch_size=16'),
        BadInput(dict(arch=lambda s: dict(_narrow_eat(s), num_heads=5)), ValueError,
                 r"embed_dims'\]=48 must be a multiple of arch\['num_heads'\]=5"),
        BadInput(dict(arch=lambda s: dict(_narrow_eat(s), num_heads=9, embed_dims=36)),
                 ValueError, r"18 global channels must be a multiple of .* 4 heads"),
        BadInput(dict(arch=lambda s: dict(_narrow_eat(s), local_kernel_size=4)), ValueError,
                 r"local_kernel_size'\]=4 must be odd"),
        BadInput(dict(arch=lambda s: dict(_narrow_eat(s), local_ratio=1.0)), ValueError,
                 r"local_ratio'\]=1.0 is out of its domain"),
        BadInput(dict(pyramid=True, out_indices=(0, 1)), ValueError,
                 r'out_indices needs 1 or 4 entries'),
        BadInput(dict(dense='yes'), ValueError, r"dense='yes'"),
        BadInput(dict(drop_rate=1.0), ValueError, r'drop_rate=1.0'),
    ])


def _narrow_edgeformer(s: dict) -> dict:
    return dict(stem_channels=8, stem_kernel_size=s['stem_kernel_size'], mv2_channels=[8, 16],
                mv2_depths=[1, 1], channels=[16, 24, 32], gcc_channels=[16, 16, 32],
                ffn_channels=[16, 24, 32], depths=[1, 1, 2],
                meta_kernel_sizes=s['meta_kernel_sizes'], fusion=s['fusion'])


EDGEFORMER = ZooEntry(
    backbone='EdgeFormer',
    archs=('xs', 's', 'h'),
    narrow=_narrow_edgeformer,
    full_width_archs=('xs', ),
    input_size=(256, 256),
    # kernels and position embeddings resized per axis (the official code needs squares)
    convert_family='edgeformer',
    bad_inputs=[
        BadInput(dict(arch=lambda s: dict(_narrow_edgeformer(s), gcc_channels=[16, 17, 32])),
                 ValueError, r"gcc_channels'\]=\[16, 17, 32\] is out of its domain"),
        BadInput(dict(arch=lambda s: dict(_narrow_edgeformer(s), gcc_channels=[8, 16, 32])),
                 ValueError, r'an even int >= 16'),
        BadInput(dict(arch=lambda s: dict(_narrow_edgeformer(s), fusion='mul')), ValueError,
                 r"fusion'\]='mul' is out of its domain: one of 'concat', 'add'"),
        BadInput(dict(arch=lambda s: dict(_narrow_edgeformer(s), stem_kernel_size=4)),
                 ValueError, r"stem_kernel_size'\]=4"),
        BadInput(dict(output_stride=4), ValueError, r'output_stride=4 .* one of 8, 16, 32'),
        BadInput(dict(drop_rate=1.0), ValueError, r'drop_rate=1.0'),
    ])


def _narrow_gcc_convnext(s: dict) -> dict:
    return dict(channels=[8, 16, 16, 32], depths=[1, 1, 2, 2], gcc_start=[1, 1, 1, 1],
                gcc_kernel_sizes=s['gcc_kernel_sizes'])


GCC_CONVNEXT = ZooEntry(
    backbone='GCCConvNeXt',
    archs=('xt', ),
    narrow=_narrow_gcc_convnext,
    full_width_archs=('xt', ),
    # ParC kernels resized per axis away from 224 (the official code takes 224-class inputs)
    bad_inputs=[
        BadInput(dict(arch=lambda s: dict(_narrow_gcc_convnext(s), gcc_start=[0, 0, -1, 0])),
                 ValueError, r"gcc_start'\]=\[0, 0, -1, 0\] is out of its domain"),
        BadInput(dict(out_norms=False, gap_before_final_norm=True), ValueError,
                 r'gap_before_final_norm=True needs out_norms=True'),
        BadInput(dict(resize_kernels='no'), ValueError, r"resize_kernels='no'"),
    ])


#: Every backbone family, by backbone class name.
ZOO: Dict[str, ZooEntry] = {
    entry.backbone: entry for entry in (EATFORMER, DWNET, EAT, GROUPMIXFORMER, EDGEFORMER,
                                             GCC_CONVNEXT)}


def zoo_entry(backbone_type: str) -> ZooEntry:
    """The entry of a backbone type as configs name it (``'mmevo.EATFormer'`` or
    ``'EATFormer'``)."""
    name = backbone_type.split('.')[-1]
    if name not in ZOO:
        raise KeyError(f'{name!r} has no entry in mmevo.testing.zoo.ZOO')
    return ZOO[name]


def shrink_backbone_cfg(backbone_cfg: dict) -> Sequence[int]:
    """Replace an mmevo backbone config's arch by its narrowed version, in place (no
    pretrained weights); return the channels of its outputs (what necks and heads receive)."""
    entry = zoo_entry(backbone_cfg['type'])
    default_arch = inspect.signature(entry.cls).parameters['arch'].default
    backbone_cfg['arch'] = entry.tiny(backbone_cfg.get('arch', default_arch))
    backbone_cfg['init_cfg'] = None
    kwargs = {k: v for k, v in backbone_cfg.items() if k != 'type'}
    return list(entry.cls(**kwargs).out_channels)

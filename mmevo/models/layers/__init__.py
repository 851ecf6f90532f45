# Copyright (c) mmevo contributors. All rights reserved.
"""Building blocks shared by mmevo's backbones (plain modules, not registered)."""
from .act_conv import act_conv
from .attention import MCA, MDMSA, WindowMSA
from .deform import (DeformConv2d, deform_conv2d, mmcv_ops_available,
                     modulated_deform_sample)
from .depthwise import dwconv, dwconv_bn_silu_conv, dwconv_silu_mix
from .ffn import ConvFFN
from .fused_conv import bn_conv_act, conv_bn_act, fused_inference
from .gli import GLI, ConvOp, DeformConvOp
from .msra import MSRA, interleave_channels
from .trhead import TRHead
from .norm import LayerNorm2d, build_eat_norm
from .window import (grid_window_heads, grid_window_layout,
                     grid_window_merge_heads, grid_window_partition)

__all__ = [
    'act_conv', 'MCA', 'MDMSA', 'WindowMSA', 'DeformConv2d', 'deform_conv2d', 'mmcv_ops_available',
    'modulated_deform_sample', 'ConvFFN', 'GLI', 'ConvOp', 'DeformConvOp', 'MSRA',
    'interleave_channels', 'TRHead', 'LayerNorm2d', 'build_eat_norm', 'grid_window_heads',
    'grid_window_layout', 'grid_window_merge_heads', 'grid_window_partition', 'dwconv',
    'dwconv_bn_silu_conv', 'dwconv_silu_mix', 'bn_conv_act', 'conv_bn_act', 'fused_inference'
]

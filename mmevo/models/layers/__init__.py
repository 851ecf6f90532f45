# Copyright (c) mmevo contributors. All rights reserved.
"""Generic building blocks shared by mmevo's backbones (plain modules and functions, not
registered). A family's own blocks live with its backbone in :mod:`mmevo.models.backbones`.

Where fast routes (fused oneDNN inference, memory-lean training nodes) may run is decided in
one place, :mod:`.fast_path`, which also holds the global off switch (:func:`plain_ops`,
``MMEVO_FAST_PATH=0``).
"""
from .attention import dot_product_attention, num_heads_of
from .conv_rel_pos import ConvRelPosEnc
from .deform import (
                     DeformConv2d,
                     deform_conv2d,
                     mmcv_cuda_ops_available,
                     mmcv_ops_available,
                     modulated_deform_sample,
)
from .depthwise import dwconv
from .dynamic_conv import (
                           DynamicDWConv2d,
                           InhomogeneousDWConv2d,
                           per_pixel_dwconv2d,
                           per_sample_dwconv2d,
)
from .fast_path import fast_path_enabled, plain_ops, use_fast_path
from .ffn import ConvFFN
from .folding import fuse_modules
from .gcc import (
                  AxialPositionEmbedding,
                  ChannelAttention,
                  GCCBlock,
                  GlobalCircularConv,
                  circular_conv,
)
from .group_mix_attention import GroupAggregator, GroupMixAttention, SeparableConv2d
from .inference_conv import bn_conv_act, conv_bn_act
from .lean_ops import act_conv, bn_conv
from .mlp import Mlp
from .norm import LayerNorm2d, build_norm
from .residual import add_residual
from .simple_pyramid import SimplePyramid
from .token_attention import CrossAttention, SelfAttention
from .window import (
                     grid_window_heads,
                     grid_window_layout,
                     grid_window_merge_heads,
                     grid_window_partition,
)

__all__ = [
    'dot_product_attention', 'num_heads_of', 'DeformConv2d', 'deform_conv2d',
    'mmcv_cuda_ops_available', 'mmcv_ops_available', 'modulated_deform_sample', 'dwconv',
    'DynamicDWConv2d', 'InhomogeneousDWConv2d', 'per_pixel_dwconv2d', 'per_sample_dwconv2d',
    'fast_path_enabled', 'plain_ops', 'use_fast_path', 'ConvFFN', 'fuse_modules', 'bn_conv_act',
    'conv_bn_act', 'act_conv', 'bn_conv', 'LayerNorm2d', 'build_norm', 'add_residual',
    'grid_window_heads', 'grid_window_layout', 'grid_window_merge_heads', 'grid_window_partition',
    'AxialPositionEmbedding', 'ChannelAttention', 'GCCBlock', 'GlobalCircularConv',
    'circular_conv', 'ConvRelPosEnc', 'GroupAggregator', 'GroupMixAttention', 'SeparableConv2d',
    'Mlp', 'SimplePyramid', 'CrossAttention', 'SelfAttention'
]

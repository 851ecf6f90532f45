# Copyright (c) mmevo contributors. All rights reserved.
"""EATFormer (`arXiv:2206.09325 <https://arxiv.org/abs/2206.09325>`_): the backbone and its own
blocks (MSRA, GLI with its ops, windowed MSA and MD-MSA, the TRHead, and the lean training nodes
of its sub-layers). Generic bricks live in :mod:`mmevo.models.layers`."""
from .attention import MCA, MDMSA, WindowMSA
from .backbone import EATBlock, EATFormer
from .gli import GLI, ConvOp, DeformConvOp
from .msra import MSRA
from .trhead import TRHead

__all__ = ['EATFormer', 'EATBlock', 'MSRA', 'GLI', 'ConvOp', 'DeformConvOp', 'WindowMSA', 'MDMSA',
           'MCA', 'TRHead']

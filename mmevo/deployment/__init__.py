# Copyright (c) mmevo contributors. All rights reserved.
"""Deployment of mmevo models: ONNX export checked with ONNX Runtime (:mod:`.onnx`)."""
from .onnx import (
    ATOL,
    DEFAULT_OPSET,
    RTOL,
    ExportError,
    OnnxCheck,
    build_export_target,
    check_onnx,
    export_config,
    export_onnx,
)

__all__ = [
    'ATOL', 'DEFAULT_OPSET', 'RTOL', 'ExportError', 'OnnxCheck', 'build_export_target',
    'check_onnx', 'export_config', 'export_onnx'
]

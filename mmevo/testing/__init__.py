# Copyright (c) mmevo contributors. All rights reserved.
"""Helpers for tests of mmevo and of projects built on it (parity fixtures, tiny inputs)."""
from .memory import saved_tensor_bytes
from .parity import (
                     ClassifierUnderTest,
                     assert_parity,
                     find_parity_file,
                     load_parity_fixture,
                     load_parity_manifest,
)
from .reference import as_reference

__all__ = [
    'ClassifierUnderTest', 'as_reference', 'assert_parity', 'find_parity_file',
    'load_parity_fixture', 'load_parity_manifest', 'saved_tensor_bytes'
]

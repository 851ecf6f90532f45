# Copyright (c) mmevo contributors. All rights reserved.
from typing import Any, Callable, Tuple

import torch


def saved_tensor_bytes(fn: Callable[[], Any]) -> Tuple[Any, int]:
    """Run ``fn()`` and count the bytes of the distinct storages autograd keeps for its
    backward pass. Returns ``(fn(), bytes)``."""
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())

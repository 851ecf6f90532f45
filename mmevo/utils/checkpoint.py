# Copyright (c) mmevo contributors. All rights reserved.
"""Safe checkpoint loading for MMEngine 0.10.7 on torch>=2.6.

torch>=2.6 unpickles with ``weights_only=True``; MMEngine 0.10.7 checkpoints hold a few objects
outside torch's default allow-list (the message hub's ``HistoryBuffer`` and numpy arrays/scalars),
so ``--resume`` and ``load_from`` fail. mmevo allow-lists exactly those classes. It never switches
``weights_only`` off, so a checkpoint whose unpickling would call anything else (``os.system``,
``eval``, ...) is refused before any of its code runs.
"""
import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader


def mmengine_checkpoint_safe_globals() -> list:
    """The classes and functions an MMEngine checkpoint may reference, and nothing more."""
    numpy_core = getattr(np, '_core', None) or np.core
    safe = [
        HistoryBuffer,
        numpy_core.multiarray._reconstruct,
        numpy_core.multiarray.scalar,
        np.ndarray,
        np.dtype,
    ]
    # numpy>=1.25 pickles dtypes through their concrete classes (numpy.dtypes.Float64DType, ...).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        safe += [
            getattr(dtypes, name) for name in dir(dtypes)
            if name.endswith('DType') and isinstance(getattr(dtypes, name), type)
        ]
    return safe


class UnsafeCheckpointError(RuntimeError):
    """Raised for a checkpoint that references objects outside the allow-list."""


def load_checkpoint_file(filename: str, map_location=None) -> dict:
    """``torch.load`` with ``weights_only=True`` and a clear error for unsafe files."""
    try:
        return torch.load(filename, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises pickle.UnpicklingError (and RuntimeError on old torch)
        if 'Weights only load failed' not in str(err):
            raise
        raise UnsafeCheckpointError(
            f'Refusing to load checkpoint {filename!r}: it references objects outside the '
            f'allow-list of MMEngine checkpoints (tensors, containers, numpy arrays, '
            f'HistoryBuffer), so unpickling it could run code. Nothing from it was executed. '
            f'Original error: {str(err).splitlines()[-1] if str(err) else err!r}') from None


def _load_from_local(filename: str, map_location=None) -> dict:
    import os.path as osp
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return load_checkpoint_file(filename, map_location=map_location)


def register_safe_checkpoint_loading() -> None:
    """Allow-list MMEngine's checkpoint contents and route local files through the safe loader."""
    torch.serialization.add_safe_globals(mmengine_checkpoint_safe_globals())
    CheckpointLoader.register_scheme(prefixes='', force=True)(_load_from_local)

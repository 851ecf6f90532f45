# Copyright (c) mmevo contributors. All rights reserved.
"""Safe checkpoint loading for MMEngine 0.10.7 on torch>=2.6.

torch>=2.6 unpickles with ``weights_only=True``. MMEngine 0.10.7 checkpoints hold a few objects
outside torch's default allow-list (the message hub's ``HistoryBuffer``, numpy arrays and
scalars), so ``--resume`` and ``load_from`` fail; and MMEngine's URL loader goes through
``torch.hub.load_state_dict_from_url``, whose ``weights_only`` still defaults to ``False``, so
a downloaded checkpoint could run code. :func:`register_safe_checkpoint_loading` allow-lists
exactly the classes MMEngine checkpoints contain (and a ``getattr`` that reaches nothing but
``HistoryBuffer``'s methods) and routes local files and URLs
(``http(s)://``, ``open-mmlab://``, ``mmcls://``, ``torchvision://``) through
``weights_only=True`` loads. ``weights_only`` is never switched off: a checkpoint whose
unpickling would call anything else (``os.system``, ``eval``, ...) is refused with
:class:`UnsafeCheckpointError` before any of its code runs.
"""
import os.path as osp
import pickle
from contextlib import contextmanager
from typing import Callable, Iterator, List, Optional, Tuple, Union

import mmengine.runner.checkpoint as mmengine_checkpoint
import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.utils import digit_version


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint references objects outside the allow-list; nothing of it was run."""


#: HistoryBuffer's statistics methods; its pickled state names them (``statistics_methods``).
HISTORY_BUFFER_METHODS = ('min', 'max', 'mean', 'current')


def history_buffer_getattr(obj: type, name: str):
    """``getattr`` for unpickling, limited to the methods of :class:`HistoryBuffer`.

    Python pickles a method such as ``HistoryBuffer.min`` as ``getattr(HistoryBuffer, 'min')``,
    and every message hub in a checkpoint holds four of them. Allowing ``getattr`` itself would
    let a checkpoint reach any attribute of any allowed object (a path to arbitrary code), so
    this stand-in, registered under the name ``builtins.getattr``, refuses everything else.
    """
    if obj is HistoryBuffer and name in HISTORY_BUFFER_METHODS:
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'Unsupported global: getattr({getattr(obj, "__qualname__", type(obj).__name__)}, '
        f'{name!r}) is not one of the HistoryBuffer methods MMEngine checkpoints reference')


def mmengine_checkpoint_safe_globals() -> List[Union[Callable, Tuple[Callable, str]]]:
    """What MMEngine checkpoints reference beyond torch's default allow-list, and nothing more.

    Measured on Runner checkpoints of mmpretrain, mmdet and mmseg (model, optimizer, parameter
    schedulers, message hub, AMP loss scaler; ``tests/test_utils/test_safe_checkpoint.py``):

    - :class:`HistoryBuffer` (the message hub's log buffers) and its statistics methods, which
      pickle through ``getattr`` (see :func:`history_buffer_getattr`);
    - numpy arrays and scalars in those buffers and in ``meta``: ``_reconstruct``, ``scalar``,
      ``ndarray``, ``dtype`` and the numeric dtype classes (see :func:`numpy_dtype_classes`),
      also under their numpy<2 names (``numpy.core.multiarray``), which checkpoints written
      with numpy 1.x use.

    ``collections.OrderedDict``/``Counter``, tensors and ``_codecs.encode`` are torch defaults.
    """
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    return [
        HistoryBuffer,
        (history_buffer_getattr, 'builtins.getattr'),
        (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
        (multiarray.scalar, 'numpy.core.multiarray.scalar'),
        (multiarray._reconstruct, 'numpy._core.multiarray._reconstruct'),
        (multiarray.scalar, 'numpy._core.multiarray.scalar'),
        np.ndarray,
        np.dtype,
    ] + numpy_dtype_classes()


def numpy_dtype_classes() -> List[type]:
    """The classes of numeric numpy dtypes (``numpy.dtypes.Float64DType``, ...).

    Unpickling an array rebuilds its dtype and sets its state, which torch only does for
    allow-listed types. Object, string and void dtypes are left out: MMEngine checkpoints hold
    numeric arrays only.
    """
    dtypes = getattr(np, 'dtypes', None)  # numpy>=1.25
    if dtypes is None:
        return []
    names = ('Bool', 'Int8', 'UInt8', 'Int16', 'UInt16', 'Int32', 'UInt32', 'Int64', 'UInt64',
             'Byte', 'UByte', 'Short', 'UShort', 'Int', 'UInt', 'Long', 'ULong', 'LongLong',
             'ULongLong', 'Float16', 'Float32', 'Float64', 'LongDouble', 'Complex64',
             'Complex128', 'CLongDouble')
    classes = (getattr(dtypes, f'{name}DType', None) for name in names)
    return list(dict.fromkeys(c for c in classes if isinstance(c, type)))


def _reason(err: BaseException) -> str:
    """The part of torch's long message that names the refused object."""
    boilerplate = ('Weights only load failed', 'Please file an issue', 'Check the documentation')
    lines = [line.strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line and not line.startswith(boilerplate)]
    reason = ' '.join(lines).replace('WeightsUnpickler error:', '').strip()
    return reason or repr(err)


@contextmanager
def _refuse_unsafe(source: str) -> Iterator[None]:
    try:
        yield
    except pickle.UnpicklingError as err:
        if 'Weights only load failed' not in str(err):
            raise
        raise UnsafeCheckpointError(
            f'Refusing to load checkpoint {source!r}: it references an object outside the '
            'allow-list of MMEngine checkpoints (tensors, containers, numpy arrays, '
            'HistoryBuffer), so unpickling it could run code. Nothing from it was run. '
            f'torch says: {_reason(err)}') from None


def load_checkpoint_file(filename: str, map_location=None) -> dict:
    """Load a local checkpoint with ``weights_only=True``.

    Args:
        filename (str): Path of the checkpoint.
        map_location: Same as :func:`torch.load`.

    Returns:
        dict: The checkpoint.

    Raises:
        UnsafeCheckpointError: The file references objects outside the allow-list.
    """
    with _refuse_unsafe(filename):
        return torch.load(filename, map_location=map_location, weights_only=True)


def load_from_local_safe(filename: str, map_location=None) -> dict:
    """MMEngine's local-file scheme, loading with ``weights_only=True``."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    return load_checkpoint_file(filename, map_location=map_location)


def load_url_safe(url: str,
                  model_dir: Optional[str] = None,
                  map_location=None,
                  progress: bool = True) -> dict:
    """``torch.hub.load_state_dict_from_url`` with ``weights_only=True``."""
    with _refuse_unsafe(url):
        return torch.hub.load_state_dict_from_url(
            url,
            model_dir=model_dir,
            map_location=map_location,
            progress=progress,
            weights_only=True)


def register_safe_checkpoint_loading() -> None:
    """Allow-list MMEngine's checkpoint contents and load local files and URLs safely.

    Idempotent. Called by ``import mmevo``. A no-op on torch<2.6, whose ``torch.load`` still
    defaults to ``weights_only=False`` and has no allow-list for named globals.
    """
    if digit_version(torch.__version__) < digit_version('2.6.0'):
        return
    torch.serialization.add_safe_globals(mmengine_checkpoint_safe_globals())
    CheckpointLoader.register_scheme(prefixes='', loader=load_from_local_safe, force=True)
    # load_from_http, and the open-mmlab://, mmcls:// and torchvision:// schemes built on it,
    # download through this module-level name.
    mmengine_checkpoint.load_url = load_url_safe

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
import os
import os.path as osp
import pickle
import re
import sys
from collections.abc import Mapping
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple, Union

import mmengine.runner.checkpoint as mmengine_checkpoint
import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader
from mmengine.utils import digit_version


class UnsafeCheckpointError(pickle.UnpicklingError):
    """A checkpoint references objects outside the allow-list; nothing of it was run."""


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint: empty, truncated, corrupt, not a mapping."""


class StateDictMismatchError(KeyError):
    """A checkpoint's keys do not match the model (shown without ``KeyError``'s quoting)."""

    def __str__(self) -> str:
        return str(self.args[0])


#: Set to 1 to load checkpoints with NaN/Inf values (refused by default).
ALLOW_NONFINITE_ENV = 'MMEVO_ALLOW_NONFINITE'


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
    """The part of torch's long weights-only message that names the refused object."""
    match = re.search(r'GLOBAL ([\w.]+)', str(err))
    if match:
        return f'the pickle names {match.group(1)}'
    boilerplate = ('Weights only load failed', 'Please file an issue', 'Check the documentation',
                   'In PyTorch 2.6', '(1)', '(2)')
    lines = [line.strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line and not line.startswith(boilerplate)]
    reason = ' '.join(lines).replace('WeightsUnpickler error:', '').strip()
    return reason or repr(err)


def _names_a_real_global(err: BaseException) -> bool:
    """Whether the global a refused pickle names exists: a refusal of a real object (unsafe)
    rather than a name cut short by a truncated file. Only modules already imported are looked
    at: nothing is imported on behalf of the file."""
    match = re.search(r'GLOBAL ([\w.]+)', str(err))
    if match is None:
        return 'Unsupported global' in str(err)
    parts = match.group(1).split('.')
    for i in range(len(parts) - 1, 0, -1):
        module = sys.modules.get('.'.join(parts[:i]))
        if module is None:
            continue
        obj = module
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return True  # a module not imported here: refuse it as unsafe, do not import it


#: The first bytes of the two formats torch.save writes.
_ZIP_MAGIC, _PICKLE_MAGIC = b'PK\x03\x04', b'\x80'


def _not_a_checkpoint(source: str, why: str) -> CheckpointError:
    return CheckpointError(f'{source!r} is not a PyTorch checkpoint: {why}. Is it the right '
                           f'file, completely downloaded / copied?')


@contextmanager
def _classify_load_errors(source: str, head: bytes = _ZIP_MAGIC) -> Iterator[None]:
    """Turn torch.load's errors into: unsafe (a refused global, named) or not a checkpoint
    (truncated, damaged). ``head``: the file's first bytes."""
    kind = 'zip archive (the torch.save format)' if head.startswith(_ZIP_MAGIC) else \
        'pickle (the legacy torch.save format)'
    try:
        yield
    except pickle.UnpicklingError as err:
        if 'Weights only load failed' in str(err) and _names_a_real_global(err):
            raise UnsafeCheckpointError(
                f'Refusing to load checkpoint {source!r}: it references an object outside the '
                'allow-list of MMEngine checkpoints (tensors, containers, numpy arrays, '
                'HistoryBuffer), so unpickling it could run code. Nothing from it was run '
                f'({_reason(err)}).') from None
        raise _not_a_checkpoint(source, f'a damaged or truncated {kind} ({_reason(err)})') \
            from None
    except (EOFError, RuntimeError, ValueError, OSError, KeyError, IndexError,
            AttributeError) as err:
        if isinstance(err, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        raise _not_a_checkpoint(source, f'a damaged or truncated {kind} '
                                f'({type(err).__name__}: {err})') from None


def load_checkpoint_file(filename: str, map_location=None) -> Any:
    """Load a local checkpoint with ``weights_only=True``, telling the failures apart.

    Args:
        filename (str): Path of the checkpoint.
        map_location: Same as :func:`torch.load`.

    Returns:
        The unpickled checkpoint (normally a dict).

    Raises:
        FileNotFoundError: no such file. CheckpointError: a directory, an empty, truncated or
            corrupt file. UnsafeCheckpointError: the file references objects outside the
            allow-list (named); nothing of it was run.
    """
    path = osp.expanduser(filename)
    if not osp.exists(path):
        raise FileNotFoundError(f'checkpoint {filename!r} does not exist')
    if osp.isdir(path):
        raise CheckpointError(f'checkpoint {filename!r} is a directory, not a file')
    with open(path, 'rb') as f:
        head = f.read(4)
    if not head:
        raise _not_a_checkpoint(filename, 'the file is empty (0 bytes)')
    if not head.startswith((_ZIP_MAGIC, _PICKLE_MAGIC)):
        raise _not_a_checkpoint(filename, f'it is neither a zip archive (the torch.save format) '
                                f'nor a pickle (it starts with bytes {head.hex(" ")})')
    with _classify_load_errors(filename, head):
        return torch.load(path, map_location=map_location, weights_only=True)


def read_checkpoint(filename: str, map_location=None, allow_nonfinite: bool = False) -> dict:
    """The one checkpoint reader of mmevo: a local file or URL, safely, as a mapping.

    Used by ``init_cfg`` Pretrained loading, mmengine's ``load_checkpoint`` / ``load_from`` /
    ``--resume`` (through the registered scheme loaders), the converters and
    :func:`mmevo.create_backbone`.

    Args:
        filename (str): Local path or URL (``https://``, ``open-mmlab://``, ...).
        map_location: Same as :func:`torch.load`.
        allow_nonfinite (bool): Accept NaN/Inf tensors in the weights. Defaults to False
            (also enabled by ``MMEVO_ALLOW_NONFINITE=1``).

    Raises:
        FileNotFoundError, CheckpointError, UnsafeCheckpointError: see
            :func:`load_checkpoint_file`; CheckpointError also when the file holds no mapping
            or (unless allowed) NaN/Inf values, naming the keys.
    """
    if '://' in filename:
        ckpt = CheckpointLoader.load_checkpoint(filename, map_location=map_location)
    else:
        ckpt = load_checkpoint_file(filename, map_location=map_location)
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f'checkpoint {filename!r} holds a {type(ckpt).__name__}, not a '
                              f'mapping of weights (a state dict, or a dict with one under '
                              f"'state_dict')")
    check_finite(weights_of(ckpt), filename, allow_nonfinite)
    return ckpt


def weights_of(checkpoint: Mapping) -> Mapping:
    """The state dict inside a checkpoint: ``checkpoint['state_dict']`` when present, else the
    checkpoint itself (a raw state dict)."""
    inner = checkpoint.get('state_dict')
    return inner if isinstance(inner, Mapping) else checkpoint


def check_finite(state_dict: Mapping, source: str, allow_nonfinite: bool = False) -> None:
    """Raise :class:`CheckpointError` naming the tensors that hold NaN or Inf, unless allowed
    (``allow_nonfinite`` or ``MMEVO_ALLOW_NONFINITE=1``)."""
    if allow_nonfinite or os.environ.get(ALLOW_NONFINITE_ENV, '0') not in ('', '0'):
        return
    bad = [k for k, v in state_dict.items()
           if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f'checkpoint {source!r} has NaN/Inf values in {len(bad)} tensor(s): '
            f'{_abbrev(bad)}. A model loaded from it would output NaN. If that is intended, '
            f'pass allow_nonfinite=True or set {ALLOW_NONFINITE_ENV}=1')


def load_from_local_safe(filename: str, map_location=None) -> dict:
    """MMEngine's local-file scheme (``load_from``, ``--resume``, ``load_checkpoint``):
    :func:`read_checkpoint`."""
    return read_checkpoint(filename, map_location=map_location)


def _abbrev(keys: Iterable[str], limit: int = 8) -> str:
    keys = sorted(keys)
    more = f' ... (+{len(keys) - limit} more)' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def _fitting_prefix(keys: Iterable[str], own: Iterable[str]) -> Optional[str]:
    """The key prefix under which ``keys`` hold ``own``'s keys, if one fits most of them."""
    own = set(own)
    votes: Dict[str, int] = {}
    for key in keys:
        parts = key.split('.')
        for i in range(1, len(parts)):
            if '.'.join(parts[i:]) in own:
                prefix = '.'.join(parts[:i]) + '.'
                votes[prefix] = votes.get(prefix, 0) + 1
                break
    if not votes:
        return None
    prefix, count = max(votes.items(), key=lambda kv: kv[1])
    return prefix if count >= len(own) / 2 else None


_CONVERT_HINT = ('Official checkpoints must first be converted with '
                 'tools/model_converters/<family>_to_mmevo.py.')


def select_state_dict(checkpoint: Mapping,
                      model: torch.nn.Module,
                      prefix: Optional[str] = None,
                      source: str = 'checkpoint') -> Dict[str, torch.Tensor]:
    """The tensors of ``checkpoint`` meant for ``model``: under ``prefix`` when given
    (``'backbone.'``), ``module.`` (DataParallel) stripped.

    Raises:
        StateDictMismatchError: no key under ``prefix`` (naming the prefix that would fit, or
            saying the keys fit without one).
    """
    weights = weights_of(checkpoint)
    state_dict = {(k[7:] if k.startswith('module.') else k): v
                  for k, v in weights.items() if torch.is_tensor(v)}
    if not state_dict:
        raise CheckpointError(f'{source!r} holds no tensors (top-level keys: '
                              f'{_abbrev(map(str, checkpoint))}). {_CONVERT_HINT}')
    own = model.state_dict().keys()
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        selected = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if selected:
            return selected
        if len(own & state_dict.keys()) >= len(own) / 2:
            raise StateDictMismatchError(
                f'{source}: no key starts with the prefix {prefix!r}, but the keys fit '
                f'{type(model).__name__} without one: load it with prefix=None')
        fits = _fitting_prefix(state_dict, own)
        hint = (f' The keys fit {type(model).__name__} under {fits!r}: use prefix={fits!r}.'
                if fits else f' {_CONVERT_HINT}')
        raise StateDictMismatchError(f'{source}: no key starts with the prefix {prefix!r}; '
                                     f'found e.g. {sorted(state_dict)[:3]}.{hint}')
    return state_dict


def check_state_dict(model: torch.nn.Module, state_dict: Mapping, source: str = 'state_dict',
                     allow_nonfinite: bool = False) -> None:
    """Raise a clear error unless ``state_dict`` matches ``model`` key for key and shape and
    holds finite values (unless ``allow_nonfinite``)."""
    own = model.state_dict()
    missing = own.keys() - state_dict.keys()
    unexpected = state_dict.keys() - own.keys()
    name = type(model).__name__
    if missing or unexpected:
        lines = [f'{source} does not match {name}: {len(missing)} missing and '
                 f'{len(unexpected)} unexpected keys.']
        fits = _fitting_prefix(unexpected, own) if unexpected else None
        if fits is not None:
            lines.append(f'  The unexpected keys are {name} keys under the prefix {fits!r}: '
                         f'load with prefix={fits!r} (for init_cfg: prefix={fits!r}).')
        if missing:
            lines.append(f'  missing: {_abbrev(missing)}')
        if unexpected:
            lines.append(f'  unexpected: {_abbrev(unexpected)}')
        if fits is None:
            if not own.keys() & state_dict.keys():
                lines.append(f'  None of its keys is a key of {name}: a checkpoint of another '
                             f'model? {_CONVERT_HINT}')
            else:
                lines.append(f'  A checkpoint of another arch or variant? {_CONVERT_HINT}')
        raise StateDictMismatchError('\n'.join(lines))
    mismatched = [f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
                  for k, v in state_dict.items() if tuple(v.shape) != tuple(own[k].shape)]
    if mismatched:
        raise ValueError(f'{source} has {len(mismatched)} tensors whose shapes do not match '
                         f'{name} (a checkpoint of another arch?): ' + '; '.join(mismatched[:6]))
    check_finite(state_dict, source, allow_nonfinite)


def load_url_safe(url: str,
                  model_dir: Optional[str] = None,
                  map_location=None,
                  progress: bool = True) -> dict:
    """``torch.hub.load_state_dict_from_url`` with ``weights_only=True``."""
    with _classify_load_errors(url):
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


def load_weights(model: torch.nn.Module,
                 checkpoint: Mapping,
                 prefix: Optional[str] = None,
                 source: str = 'checkpoint',
                 allow_nonfinite: bool = False) -> None:
    """Load a read checkpoint into ``model`` strictly: select the keys (under ``prefix``),
    adapt them (``model.adapt_state_dict``, e.g. position embeddings), check keys, shapes and
    values with errors that name them, then ``load_state_dict(strict=True)``."""
    state_dict = select_state_dict(checkpoint, model, prefix=prefix, source=source)
    if hasattr(model, 'adapt_state_dict'):
        model.adapt_state_dict(state_dict, '')
    check_state_dict(model, state_dict, source=source, allow_nonfinite=allow_nonfinite)
    model.load_state_dict(state_dict, strict=True)

# Copyright (c) mmevo contributors. All rights reserved.
"""Pre-flight check of a config's datasets: missing files named before anything is built.

Without it, a run on a machine without the data builds the model (and, under a launcher, the
process group) and then fails inside the dataset with a ``FileNotFoundError`` in every process.
The check reads what the datasets of mmpretrain, mmdet and mmseg share (MMEngine's
``BaseDataset``): ``data_root``, ``ann_file`` joined to it, and the folders of ``data_prefix``
(a string, or a dict such as ``img``, ``img_path``, ``seg_map_path``), through wrapper datasets
(``dataset=`` / ``datasets=``). Datasets that name none of them (in-memory, self-downloading)
and remote paths (``s3://...`` or a non-local ``backend_args``) are not checked.
"""
import os.path as osp
from dataclasses import dataclass
from typing import Iterator, List, Optional, Sequence

README_SECTION = '"Prepare datasets" in README.md'

#: Dataset type -> the name the README's "Prepare datasets" section uses for it.
DATASET_NAMES = {
    'ImageNet': 'ImageNet',
    'ImageNet21k': 'ImageNet',
    'CocoDataset': 'COCO',
    'ADE20KDataset': 'ADE20K',
    'PascalVOCDataset': 'Pascal VOC',
}
#: mmpretrain datasets whose ``split`` names the image folder when ``data_prefix`` is empty.
SPLIT_FOLDER_TYPES = ('ImageNet', 'ImageNet21k')
DEMO_ROOT = osp.join('data', 'demo')


@dataclass
class MissingPath:
    """A path a dataset of the config needs that does not exist.

    Args:
        path (str): The path as the dataset would open it (``data_root`` joined).
        what (str): ``'data root'``, ``'annotation file'`` or ``'<key> folder'``.
        key (str): Where the config sets it, e.g. ``'train_dataloader.dataset.ann_file'``.
        dataset_type (str): The dataset's ``type``.
    """
    path: str
    what: str
    key: str
    dataset_type: str

    @property
    def dataset_name(self) -> str:
        return DATASET_NAMES.get(self.dataset_type.split('.')[-1], self.dataset_type)


class DataNotFoundError(FileNotFoundError):
    """The config's data is not where its datasets look for it."""


def _leaf_datasets(dataset, key: str) -> Iterator[tuple]:
    """Yield ``(dataset_cfg, key)`` of the file-backed datasets inside wrappers."""
    if not isinstance(dataset, dict):
        return
    if isinstance(dataset.get('datasets'), (list, tuple)):  # ConcatDataset & co.
        for i, sub in enumerate(dataset['datasets']):
            yield from _leaf_datasets(sub, f'{key}.datasets[{i}]')
    elif isinstance(dataset.get('dataset'), dict):  # RepeatDataset, ClassBalancedDataset, ...
        yield from _leaf_datasets(dataset['dataset'], f'{key}.dataset')
    else:
        yield dataset, key


def _is_remote(path: str, dataset: dict) -> bool:
    backend = (dataset.get('backend_args') or {}).get('backend', 'local')
    return '://' in path or backend not in ('local', 'disk')


def _join(root: str, path: str) -> str:
    return path if not root or osp.isabs(path) else osp.join(root, path)


def _dataset_paths(dataset: dict) -> List[tuple]:
    """``(path, what, key suffix)`` a file-backed dataset will open; [] when it names none."""
    root = dataset.get('data_root') or ''
    ann_file = dataset.get('ann_file') or ''
    prefix = dataset.get('data_prefix') or ''
    dtype = str(dataset.get('type', ''))
    if not prefix and dataset.get('split') and dtype.split('.')[-1] in SPLIT_FOLDER_TYPES:
        prefix = dataset['split']
        prefix_key = 'split'
    else:
        prefix_key = 'data_prefix'
    paths = []
    if isinstance(ann_file, str) and ann_file:
        paths.append((_join(root, ann_file), 'annotation file', 'ann_file'))
    if isinstance(prefix, str) and prefix:
        paths.append((_join(root, prefix), 'image folder', prefix_key))
    elif isinstance(prefix, dict):
        for name, value in prefix.items():
            if isinstance(value, str) and value:
                paths.append((_join(root, value), f'{name} folder', f'data_prefix.{name}'))
    if paths and root:
        paths.insert(0, (root, 'data root', 'data_root'))
    return paths


def find_missing_data(cfg, loaders: Sequence[str]) -> List[MissingPath]:
    """Paths the datasets of ``loaders`` need that do not exist, in config order.

    A missing ``data_root`` is reported alone (not every path under it).

    Args:
        cfg (Config | dict): The (merged) config.
        loaders (Sequence[str]): Dataloader keys to check, e.g. ``('train_dataloader',)``;
            absent or ``None`` ones are skipped.

    Returns:
        list[MissingPath]: Empty when everything is there.
    """
    missing: List[MissingPath] = []
    for loader in loaders:
        loader_cfg = cfg.get(loader)
        if not isinstance(loader_cfg, dict):
            continue
        for dataset, key in _leaf_datasets(loader_cfg.get('dataset'), f'{loader}.dataset'):
            dtype = str(dataset.get('type', 'dataset'))
            for path, what, suffix in _dataset_paths(dataset):
                if _is_remote(path, dataset) or osp.exists(path):
                    continue
                missing.append(MissingPath(path, what, f'{key}.{suffix}', dtype))
                if what == 'data root':
                    break
    return missing


def describe_missing(missing: Sequence[MissingPath], cwd: Optional[str] = None) -> str:
    """One line naming the first missing path, its dataset and where to read about it."""
    first = missing[0]
    cwd = cwd or osp.abspath('.')
    where = '' if osp.isabs(first.path) else f', relative to {cwd}'
    line = (f'{first.dataset_name} data not found: {first.what} {first.path} does not exist '
            f'({first.key} of {first.dataset_type}{where}).')
    if osp.normpath(first.path).startswith(DEMO_ROOT):
        line += (' Generate the demo data with `python -m mmevo.datasets.demo_data` (or run '
                 '`bash tools/run_demo.sh`).')
    else:
        line += (f' See {README_SECTION} ({first.dataset_name}) for the expected layout, or '
                 f'set {first.key} to your copy.')
    others = len({m.path for m in missing[1:]} - {first.path})
    if others:
        line += f' {others} more missing path{"s" if others > 1 else ""}.'
    return line


def check_data(cfg, loaders: Sequence[str]) -> None:
    """Raise :class:`DataNotFoundError` with one line when a dataset's files are missing.

    Args:
        cfg (Config | dict): The (merged) config.
        loaders (Sequence[str]): Dataloader keys to check.

    Raises:
        DataNotFoundError: Some path is missing; the message names it, the dataset and the
            README section on preparing it.
    """
    missing = find_missing_data(cfg, loaders)
    if missing:
        raise DataNotFoundError(describe_missing(missing))

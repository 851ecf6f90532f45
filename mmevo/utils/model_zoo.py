# Copyright (c) mmevo contributors. All rights reserved.
"""The README's model-zoo table, generated from ``model-index.yml`` and its metafiles.

``model-index.yml`` imports one ``configs/<family>/metafile.yml`` per family, in mim's format
(``Collections`` with the paper and README, ``Models`` with ``Name``, ``In Collection``,
``Config``, ``Metadata`` and ``Results``). Every metafile model becomes one row of the table
between :data:`BEGIN_MARKER` and :data:`END_MARKER` in README.md; ``tools/misc/model_zoo_table.py
--check`` (and its test) fail when the README and the metafiles disagree.

Measured CPU throughput is a metafile field mmevo adds to mim's format, written by
``tools/misc/zoo_throughput.py --write`` from ``tools/analysis_tools/benchmark.py`` runs (never
estimated; :func:`set_throughput`)::

    Metadata:
      CPU Throughput (img/s): 41.2        # batch / median forward latency, eval mode
      CPU Throughput Setup:               # how and where it was measured (all keys required)
        hardware: AMD EPYC 9R14 (Zen 4)
        threads: 2
        batch size: 32
        resolution: 224x224
        mode: fp32
        date: 2026-12-01
        command: python tools/misc/zoo_throughput.py --batch-size 32 --threads 2

A model without the field shows ``–`` in the table.
"""
import glob
import json
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import yaml

BEGIN_MARKER = '<!-- model-zoo:begin (generated: python tools/misc/model_zoo_table.py --write) -->'
END_MARKER = '<!-- model-zoo:end -->'

THROUGHPUT_KEY = 'CPU Throughput (img/s)'
THROUGHPUT_SETUP_KEY = 'CPU Throughput Setup'
THROUGHPUT_SETUP_FIELDS = ('hardware', 'threads', 'batch size', 'resolution', 'mode', 'date',
                           'command')

MISSING = '–'
HEADER = ('| Family | Model (mim name) | Params (M) | FLOPs (G) | Published | CPU img/s '
          '| Config | Status |\n'
          '| :-- | :-- | --: | --: | :-- | --: | :-- | :-- |')
# Short metric names in the "Published" column; other metrics keep their metafile name.
METRIC_NAMES = {'Top 1 Accuracy': 'top-1', 'Top 5 Accuracy': None}


class ModelZooError(ValueError):
    """model-index.yml, a metafile or README.md cannot give a consistent model-zoo table."""


@dataclass
class ZooModel:
    """One metafile model, as the table shows it."""
    name: str
    family: str
    metafile: str
    config: str
    params: Optional[int] = None
    flops: Optional[int] = None
    results: List[Tuple[str, str, float]] = field(default_factory=list)  # (task, metric, value)
    throughput: Optional[float] = None
    throughput_setup: Optional[Dict[str, str]] = None
    weights: Optional[str] = None
    converted_from: Optional[str] = None


@dataclass
class ZooFamily:
    """One metafile collection: a family's paper and README."""
    name: str
    metafile: str
    paper_url: Optional[str] = None
    readme: Optional[str] = None


@dataclass
class ModelZoo:
    """Everything model-index.yml imports, in its order."""
    root: str
    metafiles: List[str]
    families: Dict[str, ZooFamily]
    models: List[ZooModel]


def _read_yaml(path: str, root: str) -> dict:
    rel = osp.relpath(path, root)
    if not osp.isfile(path):
        raise ModelZooError(f'{rel} does not exist')
    with open(path) as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ModelZooError(f'{rel} is not valid YAML: {e}') from None
    if not isinstance(data, dict):
        raise ModelZooError(f'{rel} must hold a mapping, got {type(data).__name__}')
    return data


def _number(value, what: str, kind=int):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ModelZooError(f'{what}={value!r} must be a positive number')
    return kind(value)


def load_model_zoo(root: str) -> ModelZoo:
    """Read ``<root>/model-index.yml`` and every metafile it imports.

    Args:
        root (str): The repository root (the folder of model-index.yml).

    Returns:
        ModelZoo: The families and models, in import order.

    Raises:
        ModelZooError: A file is missing or malformed; the message names the file, the model
            and the field.
    """
    index = _read_yaml(osp.join(root, 'model-index.yml'), root)
    imports = index.get('Import')
    if not isinstance(imports, list) or not all(isinstance(p, str) for p in imports):
        raise ModelZooError(
            f'model-index.yml: Import must be a list of metafile paths, got {imports!r}')
    families: Dict[str, ZooFamily] = {}
    models: List[ZooModel] = []
    seen: Dict[str, str] = {}
    for metafile in imports:
        meta = _read_yaml(osp.join(root, metafile), root)
        for col in meta.get('Collections') or []:
            name = col.get('Name')
            if not name:
                raise ModelZooError(f'{metafile}: a collection has no Name')
            paper = col.get('Paper')
            families[name] = ZooFamily(
                name=name,
                metafile=metafile,
                paper_url=paper.get('URL') if isinstance(paper, dict) else paper,
                readme=col.get('README'))
        for entry in meta.get('Models') or []:
            models.append(_parse_model(entry, metafile, families, seen, root))
    return ModelZoo(root=root, metafiles=list(imports), families=families, models=models)


def _parse_model(entry: dict, metafile: str, families: Dict[str, ZooFamily],
                 seen: Dict[str, str], root: str) -> ZooModel:
    name = entry.get('Name')
    if not name:
        raise ModelZooError(f'{metafile}: a model has no Name')
    where = f'{metafile}: model {name}'
    if name in seen:
        raise ModelZooError(f'{where}: the name is also used in {seen[name]}')
    seen[name] = metafile
    family = entry.get('In Collection')
    if family not in families:
        raise ModelZooError(
            f"{where}: In Collection={family!r} is not a collection of {metafile} or an "
            f'earlier metafile ({sorted(families)})')
    config = entry.get('Config')
    if not config or not osp.isfile(osp.join(root, config)):
        raise ModelZooError(f'{where}: Config={config!r} is not a file of the repository')
    meta = entry.get('Metadata') or {}
    results = []
    for result in entry.get('Results') or []:
        for metric, value in (result.get('Metrics') or {}).items():
            results.append((result.get('Task', ''), metric,
                            _number(value, f'{where}: {metric}', float)))
    throughput = _number(meta.get(THROUGHPUT_KEY), f'{where}: {THROUGHPUT_KEY}', float)
    setup = meta.get(THROUGHPUT_SETUP_KEY)
    if throughput is not None:
        missing = [k for k in THROUGHPUT_SETUP_FIELDS
                   if not isinstance(setup, dict) or setup.get(k) in (None, '')]
        if missing:
            raise ModelZooError(
                f'{where}: {THROUGHPUT_KEY} needs {THROUGHPUT_SETUP_KEY} with '
                f'{", ".join(THROUGHPUT_SETUP_FIELDS)} (missing: {", ".join(missing)})')
        setup = {k: str(setup[k]) for k in THROUGHPUT_SETUP_FIELDS}
    elif setup is not None:
        raise ModelZooError(f'{where}: {THROUGHPUT_SETUP_KEY} without {THROUGHPUT_KEY}')
    converted = entry.get('Converted From') or {}
    return ZooModel(
        name=name,
        family=family,
        metafile=metafile,
        config=config,
        params=_number(meta.get('Parameters'), f'{where}: Parameters'),
        flops=_number(meta.get('FLOPs'), f'{where}: FLOPs'),
        results=results,
        throughput=throughput,
        throughput_setup=setup,
        weights=entry.get('Weights'),
        converted_from=converted.get('Weights') or converted.get('Code'))


def unlisted_metafiles(zoo: ModelZoo) -> List[str]:
    """``configs/*/metafile.yml`` files that model-index.yml does not import (mim misses them)."""
    found = sorted(glob.glob(osp.join(zoo.root, 'configs', '*', 'metafile.yml')))
    listed = {osp.normpath(osp.join(zoo.root, p)) for p in zoo.metafiles}
    return [osp.relpath(p, zoo.root) for p in found if osp.normpath(p) not in listed]


def _fmt_scaled(value: Optional[int], scale: float) -> str:
    return MISSING if value is None else f'{value / scale:.2f}'


def _fmt_results(model: ZooModel) -> str:
    parts = []
    for _, metric, value in model.results:
        short = METRIC_NAMES.get(metric, metric)
        if short is not None:
            parts.append(f'{value:g} {short}')
    return ', '.join(parts) or MISSING


def _fmt_status(model: ZooModel) -> str:
    if model.weights:
        return f'available, [weights]({model.weights})'
    if model.converted_from:
        return f'available, [official weights]({model.converted_from})'
    return 'available, train from scratch'


def model_row(model: ZooModel, family_cell: str, setup_marks: Dict[Tuple, str]) -> str:
    """The table row of one model."""
    if model.throughput is None:
        speed = MISSING
    else:
        key = tuple(sorted(model.throughput_setup.items()))
        speed = f'{model.throughput:.1f} {setup_marks[key]}'
    config = f'[config]({model.config})'
    cells = (family_cell, f'`{model.name}`', _fmt_scaled(model.params, 1e6),
             _fmt_scaled(model.flops, 1e9), _fmt_results(model), speed, config,
             _fmt_status(model))
    return '| ' + ' | '.join(cells) + ' |'


def render_table(zoo: ModelZoo) -> str:
    """The generated block: the table, then the throughput setups its marks refer to."""
    setup_marks: Dict[Tuple, str] = {}
    setups: List[Dict[str, str]] = []
    for model in zoo.models:
        if model.throughput_setup is not None:
            key = tuple(sorted(model.throughput_setup.items()))
            if key not in setup_marks:
                setup_marks[key] = f'[{len(setups) + 1}]'
                setups.append(model.throughput_setup)
    lines = [HEADER]
    shown = set()
    for model in zoo.models:
        family_cell = ''
        if model.family not in shown:
            shown.add(model.family)
            fam = zoo.families[model.family]
            family_cell = f'[{fam.name}]({fam.readme})' if fam.readme else fam.name
            if fam.paper_url:
                family_cell += f' ([paper]({fam.paper_url}))'
        lines.append(model_row(model, family_cell, setup_marks))
    if setups:
        lines.append('')
        for i, setup in enumerate(setups, 1):
            command = setup['command']
            others = ', '.join(f'{k} {setup[k]}' for k in THROUGHPUT_SETUP_FIELDS[:-1])
            lines.append(f'[{i}] {others}: `{command}`  ')
        lines[-1] = lines[-1].rstrip()
    return '\n'.join(lines)


def split_readme(text: str, path: str = 'README.md') -> Tuple[str, str, str]:
    """Split README text into (before, generated block, after) at the markers."""
    for marker in (BEGIN_MARKER, END_MARKER):
        count = text.count(marker)
        if count != 1:
            raise ModelZooError(
                f'{path} must contain the line {marker!r} exactly once (found {count})')
    head, rest = text.split(BEGIN_MARKER)
    block, tail = rest.split(END_MARKER)
    return head + BEGIN_MARKER, block.strip('\n'), END_MARKER + tail


def write_readme(readme: str, zoo: ModelZoo) -> bool:
    """Regenerate the block in ``readme``; return whether the file changed."""
    with open(readme) as f:
        text = f.read()
    head, _, tail = split_readme(text, readme)
    new = f'{head}\n{render_table(zoo)}\n{tail}'
    if new != text:
        with open(readme, 'w') as f:
            f.write(new)
    return new != text


_ROW_NAME = re.compile(r'^\|[^|]*\|\s*`([^`]+)`\s*\|')


def row_names(block: str) -> List[str]:
    """Model names of the table rows in a generated block."""
    return [m.group(1) for m in map(_ROW_NAME.match, block.splitlines()) if m]


def check_readme(readme: str, zoo: ModelZoo) -> List[str]:
    """Differences between README's model-zoo block and the metafiles, one message each.

    Args:
        readme (str): Path of README.md.
        zoo (ModelZoo): What model-index.yml and its metafiles hold.

    Returns:
        list[str]: Empty when the README is up to date.
    """
    problems = [f'{p} is not imported by model-index.yml, so mim and the README miss it'
                for p in unlisted_metafiles(zoo)]
    with open(readme) as f:
        _, block, _ = split_readme(f.read(), readme)
    expected = render_table(zoo)
    rows = row_names(block)
    for model in zoo.models:
        if model.name not in rows:
            problems.append(f'{model.metafile}: model {model.name} has no row in the README')
    names = {m.name for m in zoo.models}
    for name in rows:
        if name not in names:
            problems.append(f'the README has a row for {name}, which no metafile of '
                            'model-index.yml lists')
    if not problems and block != expected:
        want = expected.splitlines()
        have = block.splitlines()
        diff = next((i for i, (a, b) in enumerate(zip(have, want)) if a != b),
                    min(len(have), len(want)))
        problems.append(
            f'the README table differs from the metafiles at line {diff + 1} of the block: '
            f'README has {have[diff] if diff < len(have) else "(nothing)"!r}, the metafiles '
            f'give {want[diff] if diff < len(want) else "(nothing)"!r}')
    return problems


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(' '))


def _block_end(lines: List[str], start: int, indent: int) -> int:
    """First index after ``start`` of a non-blank line indented ``<= indent`` (or the end)."""
    for i in range(start + 1, len(lines)):
        if lines[i].strip() and _indent(lines[i]) <= indent:
            return i
    return len(lines)


def set_throughput(text: str, name: str, throughput: float, setup: Dict[str, str]) -> str:
    """Write a model's measured CPU throughput and its setup into a metafile's text.

    Only the model's ``Metadata`` block changes (an earlier measurement is replaced), so the
    comments and layout of the rest of the file stay as they are.

    Args:
        text (str): The metafile.
        name (str): ``Name`` of the model.
        throughput (float): Images per second.
        setup (dict): Every field of :data:`THROUGHPUT_SETUP_FIELDS`.

    Returns:
        str: The new text.
    """
    missing = [k for k in THROUGHPUT_SETUP_FIELDS if setup.get(k) in (None, '')]
    if missing or not throughput > 0:
        raise ModelZooError(f'model {name}: a throughput > 0 and every setup field are needed '
                            f'(got {throughput!r}, missing: {", ".join(missing) or "none"})')
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines)
              if re.fullmatch(rf"\s*- Name: *['\"]?{re.escape(name)}['\"]?\s*", line)]
    if len(starts) != 1:
        raise ModelZooError(f'the metafile has {len(starts)} models named {name!r}, not one')
    start = starts[0]
    key_indent = _indent(lines[start]) + 2
    end = _block_end(lines, start, key_indent - 2)
    meta = next((i for i in range(start + 1, end)
                 if lines[i] == ' ' * key_indent + 'Metadata:'), None)
    if meta is None:  # a Metadata block right after the Name line
        lines.insert(start + 1, ' ' * key_indent + 'Metadata:')
        meta, end = start + 1, end + 1
    meta_end = _block_end(lines, meta, key_indent)
    child = ' ' * (key_indent + 2)
    body, i = [], meta + 1
    while i < meta_end:  # drop an earlier measurement
        if lines[i].startswith(child + THROUGHPUT_SETUP_KEY + ':'):
            i = _block_end(lines, i, key_indent + 2)
            continue
        if not lines[i].startswith(child + THROUGHPUT_KEY + ':'):
            body.append(lines[i])
        i += 1
    while body and not body[-1].strip():
        body.pop()
    body.append(f'{child}{THROUGHPUT_KEY}: {throughput:.1f}')
    body.append(f'{child}{THROUGHPUT_SETUP_KEY}:')
    body += [f'{child}  {k}: {json.dumps(str(setup[k]))}' for k in THROUGHPUT_SETUP_FIELDS]
    lines[meta + 1:meta_end] = body
    return '\n'.join(lines) + ('\n' if text.endswith('\n') else '')

# Copyright (c) mmevo contributors. All rights reserved.
"""README.md's model-zoo table against model-index.yml and the metafiles it imports."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import yaml
from tool_helpers import REPO, load_tool

from mmevo.utils.model_zoo import (
    BEGIN_MARKER,
    END_MARKER,
    ModelZooError,
    check_readme,
    load_model_zoo,
    render_table,
    row_names,
    set_throughput,
    split_readme,
    write_readme,
)

TOOL = osp.join(REPO, 'tools', 'misc', 'model_zoo_table.py')


def test_readme_table_matches_the_metafiles():
    zoo = load_model_zoo(REPO)
    readme = osp.join(REPO, 'README.md')
    assert check_readme(readme, zoo) == []
    # Every model of every metafile model-index.yml imports has exactly one row, in order.
    with open(readme) as f:
        _, block, _ = split_readme(f.read())
    assert row_names(block) == [m.name for m in zoo.models]
    with open(osp.join(REPO, 'model-index.yml')) as f:
        imports = yaml.safe_load(f)['Import']
    for metafile in imports:
        with open(osp.join(REPO, metafile)) as f:
            names = [m['Name'] for m in yaml.safe_load(f).get('Models') or []]
        assert names and set(names) <= set(row_names(block)), metafile


# A repository of two families, written into tmp_path.
COLLECTION = """
Collections:
  - Name: {family}
    Paper:
      URL: https://arxiv.org/abs/{arxiv}
      Title: '{family} paper'
    README: configs/{folder}/README.md
"""
MODEL = """
  - Name: {name}
    In Collection: {family}
    Config: configs/{folder}/{name}.py
    Metadata:
      FLOPs: {flops}
      Parameters: {params}{extra}
    Results:
      - Task: Image Classification
        Dataset: ImageNet-1k
        Metrics:
          Top 1 Accuracy: {top1}
          Top 5 Accuracy: 95.0
    Converted From:
      Code: https://github.com/example/{folder}
"""
SETUP = """
      CPU Throughput (img/s): 123.45
      CPU Throughput Setup:
        hardware: Test CPU
        threads: 2
        batch size: 32
        resolution: 224x224
        mode: fp32
        date: 2026-12-01
        command: python tools/analysis_tools/benchmark.py CONFIG --mode forward"""


def write_family(root, folder, family, models, arxiv='2206.09325', listed=True):
    os.makedirs(osp.join(root, 'configs', folder), exist_ok=True)
    text = COLLECTION.format(family=family, folder=folder, arxiv=arxiv) + '\nModels:'
    for name, params, flops, top1, extra in models:
        text += MODEL.format(name=name, family=family, folder=folder, params=params,
                             flops=flops, top1=top1, extra=extra)
        open(osp.join(root, 'configs', folder, f'{name}.py'), 'w').close()
    with open(osp.join(root, 'configs', folder, 'metafile.yml'), 'w') as f:
        f.write(text)
    if listed:
        index = osp.join(root, 'model-index.yml')
        imports = []
        if osp.exists(index):
            with open(index) as f:
                imports = yaml.safe_load(f)['Import']
        with open(index, 'w') as f:
            yaml.safe_dump({'Import': imports + [f'configs/{folder}/metafile.yml']}, f)


@pytest.fixture
def repo(tmp_path):
    root = str(tmp_path)
    write_family(root, 'alpha', 'Alpha', [('alpha-s_in1k', 5_000_000, 1_230_000_000, 80.1, ''),
                                          ('alpha-b_in1k', 25_100_000, 4_500_000_000, 83.0,
                                           SETUP)])
    write_family(root, 'beta', 'Beta', [('beta-t_in1k', 7_000_000, 2_000_000_000, 79.5, '')])
    with open(osp.join(root, 'README.md'), 'w') as f:
        f.write(f'# x\n\n## Model zoo\n\n{BEGIN_MARKER}\n{END_MARKER}\n\nafter\n')
    write_readme(osp.join(root, 'README.md'), load_model_zoo(root))
    return root


def readme_text(root):
    with open(osp.join(root, 'README.md')) as f:
        return f.read()


def test_generated_table(repo):
    text = readme_text(repo)
    assert text.startswith('# x\n\n## Model zoo\n\n' + BEGIN_MARKER + '\n| Family |')
    assert text.endswith(END_MARKER + '\n\nafter\n')
    _, block, _ = split_readme(text)
    lines = block.splitlines()
    assert lines[2] == (
        '| [Alpha](configs/alpha/README.md) ([paper](https://arxiv.org/abs/2206.09325)) '
        '| `alpha-s_in1k` | 5.00 | 1.23 | 80.1 top-1 | – | [config](configs/alpha/alpha-s_in1k.py) '
        '| available, [official weights](https://github.com/example/alpha) |')
    # The family is named once; the measured throughput points to its setup note.
    assert lines[3].startswith('|  | `alpha-b_in1k` | 25.10 | 4.50 | 83 top-1 | 123.5 [1] |')
    assert lines[4].startswith('| [Beta](configs/beta/README.md)')
    assert lines[-1] == (
        '[1] hardware Test CPU, threads 2, batch size 32, resolution 224x224, mode fp32, '
        'date 2026-12-01: `python tools/analysis_tools/benchmark.py CONFIG --mode forward`')
    assert check_readme(osp.join(repo, 'README.md'), load_model_zoo(repo)) == []
    assert not write_readme(osp.join(repo, 'README.md'), load_model_zoo(repo))  # idempotent


def test_model_without_row_fails(repo):
    write_family(repo, 'beta', 'Beta', [('beta-t_in1k', 7_000_000, 2_000_000_000, 79.5, ''),
                                        ('beta-s_in1k', 9_000_000, 3_000_000_000, 81.0, '')],
                 listed=False)
    assert check_readme(osp.join(repo, 'README.md'), load_model_zoo(repo)) == [
        'configs/beta/metafile.yml: model beta-s_in1k has no row in the README']


def test_row_without_model_fails(repo):
    text = readme_text(repo)
    row = next(line for line in text.splitlines() if '`beta-t_in1k`' in line)
    with open(osp.join(repo, 'README.md'), 'w') as f:
        f.write(text.replace(row, row + '\n' + row.replace('beta-t_in1k', 'beta-x_in1k')))
    assert check_readme(osp.join(repo, 'README.md'), load_model_zoo(repo)) == [
        'the README has a row for beta-x_in1k, which no metafile of model-index.yml lists']


def test_edited_number_fails(repo):
    text = readme_text(repo)
    with open(osp.join(repo, 'README.md'), 'w') as f:
        f.write(text.replace('| 80.1 top-1 |', '| 80.4 top-1 |'))
    problems = check_readme(osp.join(repo, 'README.md'), load_model_zoo(repo))
    assert len(problems) == 1
    assert problems[0].startswith('the README table differs from the metafiles at line 3')
    assert '80.4 top-1' in problems[0] and '80.1 top-1' in problems[0]


def test_metafile_not_in_model_index_fails(repo):
    write_family(repo, 'gamma', 'Gamma', [('gamma-t_in1k', 1_000_000, 1_000_000_000, 70.0, '')],
                 listed=False)
    assert check_readme(osp.join(repo, 'README.md'), load_model_zoo(repo)) == [
        'configs/gamma/metafile.yml is not imported by model-index.yml, so mim and the README '
        'miss it']


@pytest.mark.parametrize('extra, message', [
    ('\n      CPU Throughput (img/s): 50.0',
     'alpha-s_in1k: CPU Throughput (img/s) needs CPU Throughput Setup with hardware, threads, '
     'batch size, resolution, mode, date, command (missing: hardware, threads, batch size, '
     'resolution, mode, date, command)'),
    (SETUP.replace('        date: 2026-12-01\n', ''), '(missing: date)'),
    ('\n      CPU Throughput (img/s): fast', "CPU Throughput (img/s)='fast' must be a positive"),
    ('\n      CPU Throughput Setup: {hardware: x}', 'CPU Throughput Setup without CPU Throughput'),
])
def test_bad_throughput_fields(repo, extra, message):
    write_family(repo, 'alpha', 'Alpha', [('alpha-s_in1k', 5_000_000, 1_230_000_000, 80.1, extra)],
                 listed=False)
    with pytest.raises(ModelZooError, match='configs/alpha/metafile.yml: model alpha-s_in1k'
                       ) as info:
        load_model_zoo(repo)
    assert message in str(info.value)


def test_bad_metafiles(repo):
    os.remove(osp.join(repo, 'configs', 'beta', 'beta-t_in1k.py'))
    with pytest.raises(ModelZooError, match=r"model beta-t_in1k: Config='configs/beta/beta-t_in1k"
                       r".py' is not a file of the repository"):
        load_model_zoo(repo)
    with open(osp.join(repo, 'model-index.yml'), 'w') as f:
        f.write('Import:\n  - configs/delta/metafile.yml\n')
    with pytest.raises(ModelZooError, match='configs/delta/metafile.yml does not exist'):
        load_model_zoo(repo)


def test_markers_are_required(repo):
    with open(osp.join(repo, 'README.md'), 'w') as f:
        f.write('# x\n' + BEGIN_MARKER + '\n')
    with pytest.raises(ModelZooError, match='exactly once'):
        check_readme(osp.join(repo, 'README.md'), load_model_zoo(repo))


def test_tool_check_and_write(repo, capsys):
    tool = load_tool('misc/model_zoo_table.py')
    text = readme_text(repo)
    with open(osp.join(repo, 'README.md'), 'w') as f:
        f.write(text.replace('| 80.1 top-1 |', '| 80.4 top-1 |'))
    # The command line as a user runs it: exit code 1 and what differs.
    proc = subprocess.run([sys.executable, TOOL, '--root', repo, '--check'], capture_output=True,
                          text=True)
    assert proc.returncode == 1
    assert 'model zoo: the README table differs from the metafiles' in proc.stderr
    assert 'model_zoo_table.py --write' in proc.stderr
    assert tool.main(['--root', repo, '--write']) == 0
    assert 'updated (3 models)' in capsys.readouterr().out
    assert readme_text(repo) == text
    assert tool.main(['--root', repo, '--check']) == 0
    assert 'up to date (3 models)' in capsys.readouterr().out
    assert tool.main(['--root', repo]) == 0
    assert capsys.readouterr().out.strip() == render_table(load_model_zoo(repo))
    os.remove(osp.join(repo, 'model-index.yml'))
    assert tool.main(['--root', repo, '--check']) == 1
    assert capsys.readouterr().err.strip() == 'model zoo: model-index.yml does not exist'


NEW_SETUP = {'hardware': 'Other CPU', 'threads': 4, 'batch size': 8, 'resolution': '256x256',
             'mode': 'fp32', 'date': '2026-12-06', 'command': 'python x.py --a: b'}


def _model(root, name):
    return next(m for m in load_model_zoo(root).models if m.name == name)


@pytest.mark.parametrize('name', ['alpha-s_in1k', 'alpha-b_in1k'])
def test_set_throughput_adds_or_replaces_the_measurement(repo, name):
    path = osp.join(repo, 'configs', 'alpha', 'metafile.yml')
    with open(path) as f:
        text = f.read()
    new = set_throughput(text, name, 41.26, NEW_SETUP)
    with open(path, 'w') as f:
        f.write(new)
    model = _model(repo, name)
    assert model.throughput == 41.3
    assert model.throughput_setup == {k: str(v) for k, v in NEW_SETUP.items()}
    other = 'alpha-b_in1k' if name == 'alpha-s_in1k' else 'alpha-s_in1k'
    assert _model(repo, other).throughput == (123.45 if other == 'alpha-b_in1k' else None)
    assert model.results == [('Image Classification', 'Top 1 Accuracy', 80.1 if name ==
                              'alpha-s_in1k' else 83.0),
                             ('Image Classification', 'Top 5 Accuracy', 95.0)]
    # Nothing else of the file changes, and writing again gives the same text.
    block = '\n      CPU Throughput (img/s): 41.3\n      CPU Throughput Setup:' + ''.join(
        f'\n        {k}: "{v}"' for k, v in NEW_SETUP.items())
    if name == 'alpha-s_in1k':
        assert new == text.replace('Parameters: 5000000\n', f'Parameters: 5000000{block}\n')
    else:
        assert new == text.replace(SETUP, block)
    assert set_throughput(new, name, 41.26, NEW_SETUP) == new


def test_set_throughput_without_metadata_and_errors(repo):
    text = 'Models:\n  - Name: m\n    Config: c.py\n  - Name: n\n'
    new = yaml.safe_load(set_throughput(text, 'm', 5, NEW_SETUP))
    assert new['Models'][0]['Metadata']['CPU Throughput (img/s)'] == 5.0
    assert new['Models'][0]['Config'] == 'c.py' and new['Models'][1] == {'Name': 'n'}
    with pytest.raises(ModelZooError, match="0 models named 'x', not one"):
        set_throughput(text, 'x', 5, NEW_SETUP)
    with pytest.raises(ModelZooError, match='missing: date'):
        set_throughput(text, 'm', 5, {k: v for k, v in NEW_SETUP.items() if k != 'date'})
    with pytest.raises(ModelZooError, match='throughput > 0'):
        set_throughput(text, 'm', 0, NEW_SETUP)


def test_zoo_throughput_tool_measures_and_writes(repo, capsys):
    """A real (tiny) measurement of EATFormer-Mobile, written to the metafile and README."""
    with open(osp.join(repo, 'configs', 'beta', 'beta-t_in1k.py'), 'w') as f:
        f.write(f"_base_ = '{REPO}/configs/eatformer/eatformer-mobile_8xb128_in1k.py'\n")
    tool = load_tool('misc/zoo_throughput.py')
    argv = ['beta-*', '--root', repo, '--batch-size', '1', '--threads', '1', '--warmup', '0',
            '--iters', '1']
    assert tool.main(argv + ['--write']) == 0
    out = capsys.readouterr().out
    assert out.startswith('beta-t_in1k: ') and ' img/s at 224x224 ' in out
    model = _model(repo, 'beta-t_in1k')
    assert model.throughput > 0 and f'{model.throughput:.1f}' in out
    assert model.throughput_setup['resolution'] == '224x224'
    assert model.throughput_setup['command'] == (
        'python tools/misc/zoo_throughput.py --batch-size 1 --threads 1 --warmup 0 --iters 1')
    assert _model(repo, 'alpha-s_in1k').throughput is None
    assert check_readme(osp.join(repo, 'README.md'), load_model_zoo(repo)) == []
    assert f'| {model.throughput:.1f} [2] |' in readme_text(repo)
    assert tool.main(['nothing-*', '--root', repo]) == 1
    assert "no model-zoo model matches ['nothing-*']" in capsys.readouterr().err
    with open(osp.join(repo, 'configs', 'beta', 'beta-t_in1k.py'), 'w') as f:
        f.write("model = dict(type='NoSuchModel')\n")
    assert tool.main(argv) == 1
    assert 'beta-t_in1k: failed: ' in capsys.readouterr().err


def test_default_input_is_the_test_crop():
    """What zoo_throughput.py, get_flops.py, benchmark.py and pytorch2onnx.py measure at."""
    from mmengine.config import Config

    from mmevo.utils.flops import config_input_size

    def size(*path):
        return config_input_size(Config.fromfile(osp.join(REPO, 'configs', *path)))

    assert size('eat', 'eat-tiny_8xb128_in1k-384px.py') == (384, 384)
    assert size('edgeformer', 'edgeformer-s_8xb128_in1k-256px.py') == (256, 256)
    assert size('eat', 'eat-tiny_8xb128_in1k.py') == (224, 224)
    assert size('mask_rcnn', 'eat_t_1x.py') == (800, 1280)  # no test crop: the scope default

# Copyright (c) mmevo contributors. All rights reserved.
"""``mim search mmevo`` lists the metafile models, as after the README's install."""
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import yaml
from tool_helpers import REPO

from mmevo.utils.model_zoo import load_model_zoo


def test_mim_search_lists_every_metafile_model(tmp_path):
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    assert osp.isfile(mim), 'openmim is not installed in this environment (tools/install.sh does)'
    # As a user runs it: from another folder, without the checkout on PYTHONPATH (with it there,
    # mim would find the checkout's mmevo.egg-info and its .mim folder and hide a broken install).
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([mim, 'search', 'mmevo'], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    listed = re.findall(r'^config id: (\S+)$', proc.stdout, flags=re.M)
    zoo = load_model_zoo(REPO)
    assert sorted(listed) == sorted(m.name for m in zoo.models)
    # mim reads the metafiles' fields, e.g. the config path and the published top-1.
    first = zoo.models[0]
    entry = proc.stdout.split(f'config id: {first.name}\n', 1)[1].split('-----', 1)[0]
    assert re.search(rf'^config\s+{re.escape(first.config)}$', entry, flags=re.M), entry
    top1 = next(v for _, metric, v in first.results if metric == 'Top 1 Accuracy')
    assert re.search(rf'^imagenet-1k/top_1_accuracy\s+{top1:g}$', entry, flags=re.M), entry


def test_editable_install_layout(tmp_path):
    """What mim and Python each find, from outside the checkout (see setup.py)."""
    code = ('import importlib.util, pkg_resources; '
            "print(importlib.util.find_spec('mmevo').origin); "
            "print(pkg_resources.get_distribution('mmevo').location)")
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    proc = subprocess.run([sys.executable, '-W', 'ignore', '-c', code], cwd=str(tmp_path),
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    origin, location = proc.stdout.split()
    # The package is imported from the checkout, not from the folder mim reads ...
    assert origin == osp.join(REPO, 'mmevo', '__init__.py')
    # ... and mim's <location>/mmevo/.mim/model-index.yml imports the checkout's index, so
    # metafiles added after the install are listed without reinstalling.
    with open(osp.join(location, 'mmevo', '.mim', 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    assert [osp.realpath(p) for p in index['Import']] == [
        osp.realpath(osp.join(REPO, 'model-index.yml'))]


def test_wheel_install_has_the_mim_folder(tmp_path):
    """A regular (non-editable) install carries configs, tools and the index in mmevo/.mim."""
    src = tmp_path / 'src'
    ignore = shutil.ignore_patterns('__pycache__', '.mim', '*.egg-info')
    for name in ('mmevo', 'configs', 'tools', 'requirements'):
        shutil.copytree(osp.join(REPO, name), src / name, ignore=ignore)
    for name in ('setup.py', 'README.md', 'model-index.yml', 'requirements.txt'):
        shutil.copy(osp.join(REPO, name), src / name)
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check']
    subprocess.run(pip + ['wheel', '-q', '--no-deps', '--no-build-isolation', '-w',
                          str(tmp_path / 'dist'), str(src)], check=True, timeout=300)
    wheel = next((tmp_path / 'dist').glob('mmevo-*.whl'))
    subprocess.run(pip + ['install', '-q', '--no-deps', '--target', str(tmp_path / 'site'),
                          str(wheel)], check=True, timeout=300)
    mim_dir = tmp_path / 'site' / 'mmevo' / '.mim'
    for path in ('model-index.yml', 'configs/eatformer/metafile.yml', 'tools/train.py',
                 'tools/dist_train.sh'):
        assert (mim_dir / path).is_file(), path
    env = dict(os.environ, PYTHONPATH=str(tmp_path / 'site'))
    mim = osp.join(osp.dirname(sys.executable), 'mim')
    proc = subprocess.run([mim, 'search', 'mmevo'], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    listed = re.findall(r'^config id: (\S+)$', proc.stdout, flags=re.M)
    assert sorted(listed) == sorted(m.name for m in load_model_zoo(REPO).models)

# Copyright (c) mmevo contributors. All rights reserved.
"""Packaging: model-index.yml, the .mim folder that ``mmevo::`` and mim rely on, the scripts."""
import os
import os.path as osp
import subprocess

import pytest
import yaml
from tool_helpers import REPO


def test_model_index_names_existing_files():
    with open(osp.join(REPO, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    assert isinstance(index['Import'], list)  # MMEngine iterates it; a bare key would be None
    for metafile in index['Import']:
        path = osp.join(REPO, metafile)
        assert osp.isfile(path), metafile
        with open(path) as f:
            meta = yaml.safe_load(f)
        for model in meta.get('Models', []):
            assert osp.isfile(osp.join(REPO, model['Config'])), model['Config']


def test_mim_folder_of_installed_mmevo():
    """``mmevo::`` resolves through the imported package's .mim folder (setup.py links it)."""
    import mmevo
    package = osp.dirname(mmevo.__file__)
    if osp.realpath(package) != osp.realpath(osp.join(REPO, 'mmevo')):
        pytest.skip('mmevo is not imported from this checkout')
    for name in ('configs', 'tools', 'model-index.yml'):
        path = osp.join(package, '.mim', name)
        assert osp.exists(path), f'{path} missing: reinstall with `pip install -e .`'
        assert osp.realpath(path) == osp.realpath(osp.join(REPO, name))


@pytest.mark.parametrize('script', [
    'tools/install.sh', 'tools/run_tests.sh', 'tools/run_demo.sh', 'tools/dist_train.sh',
    'tools/dist_test.sh', 'tools/slurm_train.sh', 'tools/slurm_test.sh', '.ci/run'
])
def test_shell_scripts(script):
    path = osp.join(REPO, script)
    assert os.access(path, os.X_OK), f'{script} is not executable'
    subprocess.run(['bash', '-n', path], check=True)


@pytest.mark.parametrize('script', ['dist_train.sh', 'dist_test.sh'])
def test_dist_scripts_usage(script):
    proc = subprocess.run(['bash', osp.join(REPO, 'tools', script)], capture_output=True,
                          text=True)
    assert proc.returncode == 2 and 'usage:' in proc.stderr

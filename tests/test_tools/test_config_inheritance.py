# Copyright (c) mmevo contributors. All rights reserved.
"""A config written outside the repository inherits an mmevo config with ``mmevo::``."""
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
from mmengine.config import Config
from tool_helpers import REPO, load_tool

BASE = 'eatformer/eatformer-mobile_8xb128_in1k.py'

pytestmark = pytest.mark.skipif(
    not osp.isfile(osp.join(REPO, 'configs', BASE)), reason=f'configs/{BASE} not there yet')


@pytest.fixture
def user_config(tmp_path) -> str:
    path = tmp_path / 'my_project' / 'my_eatformer.py'
    path.parent.mkdir()
    path.write_text(
        textwrap.dedent(f'''
            _base_ = 'mmevo::{BASE}'
            train_dataloader = dict(batch_size=2)
            work_dir = './work_dirs/mine'
        '''))
    return str(path)


def test_inherit_with_mmevo_prefix(user_config):
    import mmengine.config.config as mmengine_config

    import mmevo
    # Found where mmevo is imported from, also for PEP 660 editable installs.
    assert mmengine_config.get_installed_path('mmevo') == osp.dirname(mmevo.__file__)
    cfg = Config.fromfile(user_config)
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.model.backbone.type == 'mmevo.EATFormer'
    assert cfg.model.backbone.arch == 'mobile'
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.work_dir == './work_dirs/mine'


def test_prefix_needs_import_mmevo(user_config):
    """What users of plain MMEngine see; mmevo's tools import mmevo before parsing."""
    code = f'from mmengine.config import Config; Config.fromfile({user_config!r})'
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode != 0
    assert 'mmengine does not support to load mmevo config' in proc.stderr


def test_print_config_tool(user_config, tmp_path, capsys):
    tool = load_tool('misc/print_config.py')
    tool.main([user_config, '--save-path', str(tmp_path / 'resolved.py')])
    out = capsys.readouterr().out
    assert "type='mmevo.EATFormer'" in out
    assert "default_scope = 'mmpretrain'" in out
    assert Config.fromfile(str(tmp_path / 'resolved.py')).model.backbone.arch == 'mobile'

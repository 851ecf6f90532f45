# Copyright (c) mmevo contributors. All rights reserved.
import importlib.util
import os.path as osp
import warnings

import mmengine.config.config as mmengine_config
from mmengine.config import Config
from mmengine.config.utils import MODULE2PACKAGE
from mmengine.registry import init_default_scope
from mmengine.utils import get_installed_path

#: Default scopes of the task libraries mmevo serves, and what they do.
TASK_SCOPES = {
    'mmpretrain': 'classification',
    'mmdet': 'detection',
    'mmseg': 'segmentation',
}


def register_mmevo_config_prefix() -> None:
    """Allow ``_base_ = 'mmevo::<path>'`` in configs.

    MMEngine resolves ``pkg::path`` only for packages listed in ``MODULE2PACKAGE``
    (open-mmlab/mmengine#1410). With mmevo added there, the files are found in the imported
    package's ``.mim/configs`` like mmdet's (``setup.py`` links or copies ``configs/`` there,
    also for editable installs).
    """
    MODULE2PACKAGE.setdefault('mmevo', 'mmevo')
    mmengine_config.get_installed_path = _installed_path


def _installed_path(package: str) -> str:
    """MMEngine's ``get_installed_path``, but mmevo is where it was imported from.

    MMEngine 0.10.7 derives the path from the distribution's location, which for a PEP 660
    editable install (modern pip) is site-packages, where no ``mmevo/.mim`` exists.
    """
    if package == 'mmevo':
        return osp.dirname(osp.dirname(osp.abspath(__file__)))
    return get_installed_path(package)


def ignore_pkg_resources_warning() -> None:
    """Filter the one warning MMEngine's config loading repeats on every command.

    MMEngine 0.10.7 imports and reloads ``pkg_resources`` whenever it checks whether a package
    is installed (every ``mmdet::``/``mmseg::``/``mmpretrain::`` base of a config), and
    setuptools warns that ``pkg_resources`` is deprecated each time. mmevo's tools call this
    when they start; every other warning is still shown.
    """
    warnings.filterwarnings(
        'ignore', message='pkg_resources is deprecated as an API', category=UserWarning)


def setup_default_scope(cfg: Config) -> str:
    """Make ``cfg.default_scope`` the current scope and return it.

    The default scope says which library the config is for (``'mmpretrain'``, ``'mmdet'`` or
    ``'mmseg'``, set by those libraries' ``default_runtime.py`` bases); mmevo's tools serve all
    three from one script. Modules of the library register lazily through its registries'
    locations when the Runner builds them.

    Args:
        cfg (Config): The parsed config.

    Returns:
        str: The default scope, ``'mmengine'`` for a config that sets none.

    Raises:
        ModuleNotFoundError: The library the config needs is not installed.
    """
    scope = cfg.get('default_scope') or 'mmengine'
    if importlib.util.find_spec(scope) is None:
        package = MODULE2PACKAGE.get(scope, scope)
        raise ModuleNotFoundError(
            f"This config has default_scope='{scope}' but {scope} is not installed; "
            f'install it with `bash tools/install.sh` or `pip install {package}`.')
    init_default_scope(scope)
    return scope

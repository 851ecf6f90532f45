# Copyright (c) mmevo contributors. All rights reserved.
"""Packaging for mmevo (OpenMMLab style).

mmcv and the task libraries are deliberately not in ``install_requires``: users bring mmcv built
with ops from any source (see ``tools/install.sh``); ``pip install mmevo[mim]`` states the ranges.
"""
import json
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

try:  # setuptools>=64: PEP 660 editable installs
    from setuptools.command.editable_wheel import _StaticPth, editable_wheel
except ImportError:  # older setuptools installs editable projects with `setup.py develop`
    _StaticPth = editable_wheel = None

ROOT = osp.dirname(osp.abspath(__file__))


def get_version() -> str:
    scope: dict = {}
    with open(osp.join(ROOT, 'mmevo', 'version.py')) as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


def parse_requirements(fname: str) -> list:
    """Read a requirements file, following ``-r other.txt`` includes."""
    reqs = []
    with open(osp.join(ROOT, fname)) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if not line:
                continue
            if line.startswith('-r '):
                reqs += parse_requirements(
                    osp.join(osp.dirname(fname), line[3:].strip()))
            else:
                reqs.append(line)
    return reqs


def add_mim_extension() -> None:
    """Expose configs/, tools/ and model-index.yml as ``mmevo/.mim`` for mim and ``mmevo::``.

    Symlinks for development installs (``develop`` and PEP 660 ``editable_wheel``, which the stock
    OpenMMLab helper misses), copies when building a wheel or sdist.
    """
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'symlink'
    elif any(cmd in sys.argv for cmd in ('sdist', 'bdist_wheel', 'install')):
        mode = 'copy'
    else:
        return
    mim_path = osp.join(ROOT, 'mmevo', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in ('configs', 'tools', 'model-index.yml'):
        src = osp.join(ROOT, name)
        dst = osp.join(mim_path, name)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            os.symlink(osp.relpath(src, mim_path), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


if editable_wheel is not None:

    class EditableWheelWithMimIndex(editable_wheel):
        """A PEP 660 editable wheel in which mim finds mmevo's model index.

        mim (and MMEngine's ``get_installed_path``) look for ``model-index.yml`` in
        ``<location>/mmevo/.mim/``, where ``<location>`` is the folder holding the
        distribution's metadata: site-packages for a PEP 660 editable install, which keeps the
        code in the checkout. The wheel therefore also installs
        ``site-packages/mmevo/.mim/model-index.yml``, one ``Import:`` line naming the
        checkout's index, so ``mim search mmevo`` always reads the current metafiles.

        That file makes ``site-packages/mmevo`` a folder. Python's path finder would import it
        as an empty namespace package before setuptools' import hook for flat layouts is asked,
        so the editable install puts the checkout on ``sys.path`` instead (a ``.pth`` file, as
        ``setup.py develop`` did): the real ``mmevo`` package there wins over the folder
        without ``__init__.py``. ``package_dir={'': '.'}`` below selects that strategy.
        """

        def _select_strategy(self, name, tag, build_lib):
            strategy = super()._select_strategy(name, tag, build_lib)
            if not isinstance(strategy, _StaticPth):
                raise RuntimeError(
                    f'mmevo needs a path-based editable install (sys.path entry), but this '
                    f'setuptools chose {type(strategy).__name__}; install with '
                    '`pip install -e . --config-settings editable_mode=compat`')
            return _WithMimIndex(strategy)

    class _WithMimIndex:
        """Wrap an editable strategy: also write ``mmevo/.mim/model-index.yml``."""

        def __init__(self, strategy):
            self.strategy = strategy

        def __call__(self, wheel, files, mapping):
            self.strategy(wheel, files, mapping)
            index = json.dumps(osp.join(ROOT, 'model-index.yml'))  # a valid YAML string
            wheel.writestr(
                'mmevo/.mim/model-index.yml',
                '# Written by mmevo\'s setup.py for an editable install (read by mim).\n'
                f'Import:\n  - {index}\n')

        def __enter__(self):
            self.strategy.__enter__()
            return self

        def __exit__(self, *exc_info):
            return self.strategy.__exit__(*exc_info)

    CMDCLASS = {'editable_wheel': EditableWheelWithMimIndex}
else:
    CMDCLASS = {}


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmevo',
        version=get_version(),
        description='Evolution-inspired vision backbones (EATFormer, EAT) and peers '
        'for the OpenMMLab 2.x stack',
        long_description=open(osp.join(ROOT, 'README.md')).read()
        if osp.exists(osp.join(ROOT, 'README.md')) else '',
        long_description_content_type='text/markdown',
        keywords='computer vision, backbone, EATFormer, openmmlab',
        packages=find_packages(exclude=('configs', 'tools', 'demo', 'tests')),
        package_dir={'': '.'},
        cmdclass=CMDCLASS,
        include_package_data=True,
        # what add_mim_extension copies for a wheel or sdist (mim and ``mmevo::`` read it)
        package_data={'mmevo': [
            '.mim/model-index.yml', '.mim/configs/**/*.py', '.mim/configs/**/*.yml',
            '.mim/configs/**/*.md', '.mim/tools/**/*.py', '.mim/tools/**/*.sh'
        ]},
        python_requires='>=3.8',
        install_requires=parse_requirements('requirements/runtime.txt'),
        extras_require={
            'all': parse_requirements('requirements.txt'),
            'tests': parse_requirements('requirements/tests.txt'),
            'optional': parse_requirements('requirements/optional.txt'),
            'mim': parse_requirements('requirements/mminstall.txt'),
        },
        license='Apache License 2.0',
        zip_safe=False)

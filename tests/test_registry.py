# Copyright (c) mmevo contributors. All rights reserved.
"""``type='mmevo.X'`` from the mmdet, mmseg and mmpretrain scopes; helpful misses; light import."""
import subprocess
import sys
import textwrap

import pytest
from mmengine.registry import Registry

from mmevo.registry import MODELS, MMEvoRegistry

SCOPES = ('mmdet', 'mmseg', 'mmpretrain')
TINY_ARCH = dict(
    depths=[1, 1, 1, 1],
    embed_dims=[16, 16, 24, 32],
    dim_heads=[8, 8, 4, 8],
    op_names=[['conv'], ['conv'], ['msa', 'conv'], ['msa', 'conv']])


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, '-c', textwrap.dedent(code)],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


def test_builds_from_every_task_scope():
    """A fresh interpreter with no custom_imports: the prefix alone finds mmevo's backbone."""
    out = _run(f'''
        import sys
        import torch
        from mmengine.registry import init_default_scope
        for scope in {SCOPES!r}:
            registry = __import__(scope + '.registry', fromlist=['MODELS']).MODELS
            init_default_scope(scope)
            if scope == 'mmdet':
                assert 'mmevo.models' not in sys.modules  # nothing imported it beforehand
            model = registry.build(dict(type='mmevo.EATFormer', arch={TINY_ARCH!r}))
            assert type(model).__module__ == 'mmevo.models.backbones.eatformer.backbone'
            outs = model(torch.rand(1, 3, 64, 64))
            print(scope, type(model).__name__, len(outs))
    ''')
    for scope in SCOPES:
        assert f'{scope} EATFormer' in out


@pytest.mark.parametrize('scope', SCOPES)
def test_unknown_name_names_registry_and_close_matches(scope):
    from mmengine.registry import DefaultScope
    registry = __import__(f'{scope}.registry', fromlist=['MODELS']).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        with pytest.raises(KeyError) as err:
            registry.build(dict(type='mmevo.EATFomer', arch=TINY_ARCH))
    msg = str(err.value)
    assert "'EATFomer' is not in the mmevo::model registry" in msg
    assert "Did you mean 'EATFormer'" in msg


def test_miss_messages():
    registry = MMEvoRegistry('thing', scope='mmevo_test_registry')

    @registry.register_module()
    class SwinBlock:
        pass

    with pytest.raises(KeyError, match="Did you mean 'SwinBlock'"):
        registry.get('swinblock')  # case slips are matched too
    with pytest.raises(KeyError,
                       match=r"Registered in mmevo_test_registry::thing: \['SwinBlock'\]"):
        registry.get('Unrelated')
    # Dotted paths are left to MMEngine, which imports them as module paths.
    assert registry.get('mmevo_test_registry.no.such.path') is None
    assert MODELS.get('EATFormer').__name__ == 'EATFormer'


def test_mmevo_registries_are_children_of_mmengine_roots():
    from mmengine import registry as roots

    import mmevo.registry as ours
    for name in ('MODELS', 'MODEL_WRAPPERS', 'HOOKS', 'OPTIM_WRAPPER_CONSTRUCTORS'):
        child = getattr(ours, name)
        assert isinstance(child, Registry)
        assert child.scope == 'mmevo'
        assert child.parent is getattr(roots, name)
        assert getattr(roots, name).children['mmevo'] is child


def test_import_mmevo_is_light():
    """``import mmevo`` must not import the task libraries (nor mmevo's models)."""
    out = _run('''
        import sys
        import mmevo
        heavy = ('mmdet', 'mmseg', 'mmpretrain', 'mmevo.models')
        print(sorted(m for m in heavy if m in sys.modules))
    ''')
    assert out.strip() == '[]'

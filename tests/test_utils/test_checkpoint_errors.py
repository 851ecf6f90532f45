# Copyright (c) mmevo contributors. All rights reserved.
"""Bad checkpoints get errors that name the problem and the file, on every load path.

One reader (``mmevo.utils.checkpoint.read_checkpoint``) serves ``init_cfg`` Pretrained loading,
mmengine's ``load_checkpoint`` / ``load_from`` / ``--resume`` (the registered scheme loader), the
converters and ``mmevo.create_backbone``. It tells apart: a missing file, an empty one, a
truncated or damaged one, random bytes (none of them "unsafe"), a pickle that would run code
(unsafe, the global named), a file that holds no mapping, and weights with NaN/Inf (named by
key; refused unless allowed). Key-level problems (wrong prefix, another model or arch) name the
keys and the prefix that would fit. Converters never destroy their input.
"""
import os
import os.path as osp

import pytest
import torch

import mmevo
from mmevo.testing.zoo import ZOO
from mmevo.utils.checkpoint import CheckpointError, StateDictMismatchError, UnsafeCheckpointError
from mmevo.utils.converters import cli, converters

ENTRIES = sorted(ZOO.values(), key=lambda e: e.backbone)


class _Evil:

    def __reduce__(self):
        return (os.system, ('echo pwned > /dev/null', ))


def _tiny(entry, **kwargs):
    torch.manual_seed(0)
    return entry.build(entry.tiny(entry.archs[0]), **kwargs)


@pytest.fixture(scope='module')
def bad_files(tmp_path_factory):
    """name -> (path, expected error type, regex of the message)."""
    root = tmp_path_factory.mktemp('ckpts')
    good = root / 'good.pth'
    torch.save({'state_dict': {'w': torch.randn(64, 64)}}, good)
    data = good.read_bytes()
    legacy = root / 'legacy.pth'
    torch.save({'w': torch.randn(64, 64)}, legacy, _use_new_zipfile_serialization=False)
    files = {
        'missing': (root / 'missing.pth', FileNotFoundError, r'does not exist'),
        'empty': (root / 'empty.pth', CheckpointError, r'not a PyTorch checkpoint: .*empty'),
        'truncated': (root / 'truncated.pth', CheckpointError,
                      r'not a PyTorch checkpoint: a damaged or truncated zip'),
        'truncated_legacy': (root / 'truncated_legacy.pth', CheckpointError,
                             r'not a PyTorch checkpoint: a damaged or truncated pickle'),
        'random': (root / 'random.pth', CheckpointError,
                   r'not a PyTorch checkpoint: it is neither a zip archive'),
        'unsafe': (root / 'unsafe.pth', UnsafeCheckpointError, r'Refusing.*posix.system'),
        'list': (root / 'list.pth', CheckpointError, r'holds a list, not a mapping'),
    }
    files['empty'][0].write_bytes(b'')
    files['truncated'][0].write_bytes(data[:len(data) // 2])
    files['truncated_legacy'][0].write_bytes(legacy.read_bytes()[:2000])
    files['random'][0].write_bytes(b'\x01' + torch.randint(0, 256, (4095, ),
                                                          generator=torch.Generator().manual_seed(0),
                                                          dtype=torch.uint8).numpy().tobytes())
    torch.save({'state_dict': {'w': _Evil()}}, files['unsafe'][0])
    torch.save([torch.zeros(1)], files['list'][0])
    return files


CASES = ['missing', 'empty', 'truncated', 'truncated_legacy', 'random', 'unsafe', 'list']


@pytest.mark.parametrize('case', CASES)
def test_every_load_path_tells_the_failure_apart(bad_files, case, tmp_path, capsys):
    from mmengine.runner import load_checkpoint
    from mmengine.runner.checkpoint import CheckpointLoader
    path, error, match = bad_files[case]
    path = str(path)
    entry = ZOO['EATFormer']
    model = _tiny(entry, init_cfg=dict(type='Pretrained', checkpoint=path, prefix='backbone.'))
    loaders = {
        'init_cfg Pretrained': model.init_weights,
        'mmengine load_checkpoint': lambda: load_checkpoint(_tiny(entry), path),
        'load_from / resume': lambda: CheckpointLoader.load_checkpoint(path),
        'create_backbone': lambda: mmevo.create_backbone('eatformer_tiny', checkpoint=path),
    }
    for where, load in loaders.items():
        with pytest.raises(error, match=match) as info:
            load()
        assert path in str(info.value), where
    # the converter CLI: exit status 1 and the same message on stderr
    assert cli.main('eatformer', [path, str(tmp_path / 'out.pth')]) == 1
    err = capsys.readouterr().err
    assert path in err and not osp.exists(tmp_path / 'out.pth')


@pytest.mark.parametrize('entry', ENTRIES, ids=lambda e: e.backbone)
def test_state_dict_problems_name_keys_and_prefix(entry, tmp_path):
    model = _tiny(entry)
    weights = model.state_dict()
    classifier = tmp_path / 'classifier.pth'
    torch.save({'state_dict': {f'backbone.{k}': v for k, v in weights.items()}}, classifier)

    # a classifier / detector checkpoint loaded without its prefix
    with pytest.raises(StateDictMismatchError, match=r"under the prefix 'backbone\.'.*"
                       r"prefix='backbone\.'") as info:
        _tiny(entry).load_pretrained(str(classifier))
    assert 'another model' not in str(info.value)
    # a wrong prefix: the one that fits is named
    with pytest.raises(StateDictMismatchError, match=r"no key starts with the prefix 'neck\.'.*"
                       r"use prefix='backbone\.'"):
        _tiny(entry).load_pretrained(str(classifier), prefix='neck.')
    _tiny(entry).load_pretrained(str(classifier), prefix='backbone.')  # and the right one loads

    # another model altogether
    other = tmp_path / 'other.pth'
    torch.save({'state_dict': {'fc.weight': torch.zeros(2, 2)}}, other)
    with pytest.raises(StateDictMismatchError, match=r'None of its keys .* another model'):
        _tiny(entry).load_pretrained(str(other))

    # another arch of the same family: shapes named
    key = next(k for k in weights if weights[k].dim() == 4)
    wrong = dict(weights, **{key: torch.zeros(*weights[key].shape[:-1], 7)})
    mismatched = tmp_path / 'mismatched.pth'
    torch.save(wrong, mismatched)
    with pytest.raises(ValueError, match=rf'{key}: checkpoint .* vs model'):
        _tiny(entry).load_pretrained(str(mismatched))

    # one NaN tensor: refused, named; loads when allowed
    nan = dict(weights)
    nan[key] = weights[key].clone(memory_format=torch.contiguous_format)
    nan[key].view(-1)[0] = float('nan')
    nan_file = tmp_path / 'nan.pth'
    torch.save(nan, nan_file)
    with pytest.raises(CheckpointError, match=rf'NaN/Inf values in 1 tensor\(s\): {key}'):
        _tiny(entry).load_pretrained(str(nan_file))
    model = _tiny(entry)
    model.load_pretrained(str(nan_file), allow_nonfinite=True)
    assert torch.isnan(model.state_dict()[key]).any()


@pytest.mark.parametrize('family', sorted(converters()))
def test_converter_refuses_dst_is_src(family, tmp_path, capsys):
    src = tmp_path / 'official.pth'
    torch.save({'model': {'x': torch.zeros(3)}, 'ema': 1}, src)
    before = src.read_bytes()
    link = tmp_path / 'link.pth'
    link.symlink_to(src)
    for dst in (src, link, tmp_path / '.' / 'official.pth'):
        assert cli.main(family, [str(src), str(dst)]) == 2
        assert 'DST is SRC' in capsys.readouterr().err
        assert src.read_bytes() == before


@pytest.mark.parametrize('family', sorted(converters()))
def test_converter_write_is_atomic(family, tmp_path, monkeypatch, capsys):
    from mmevo.testing import load_parity_fixture
    from mmevo.testing.parity import parity_cases
    from mmevo.utils.converters import base
    conv = converters()[family]
    case = next(c for c, f in parity_cases() if f in conv.fixture_families)
    src = tmp_path / 'official.pth'
    torch.save(dict(load_parity_fixture(case)['state_dict']), src)

    real_save = torch.save

    def crash_midway(obj, f, *args, **kwargs):
        f.write(b'PK\x03\x04 partial')
        raise KeyboardInterrupt('interrupted while writing')

    monkeypatch.setattr(base.torch, 'save', crash_midway)
    new = tmp_path / 'new.pth'
    with pytest.raises(KeyboardInterrupt):
        cli.main(family, [str(src), str(new)])
    assert not new.exists()
    existing = tmp_path / 'existing.pth'
    existing.write_bytes(b'previous conversion')
    with pytest.raises(KeyboardInterrupt):
        cli.main(family, [str(src), str(existing)])
    assert existing.read_bytes() == b'previous conversion'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['existing.pth', 'official.pth']

    monkeypatch.setattr(base.torch, 'save', real_save)
    assert cli.main(family, [str(src), str(existing)]) == 0
    out = capsys.readouterr().out
    assert 'overwrote the existing' in out and str(existing) in out
    assert set(torch.load(existing, weights_only=True)) == {'state_dict', 'meta'}

# Copyright (c) mmevo contributors. All rights reserved.
"""Parity with the official implementations: fixtures of official weights, inputs and outputs.

Fixtures are looked up in ``tests/data/parity`` of the repository, then in ``$MMEVO_PARITY_DIR``,
then in ``../shared/parity`` next to the repository. Their format is documented in that folder's
README (official state dict, inputs, outputs, per-stage outputs, tolerances).
"""
import json
import os
import os.path as osp
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

_REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _parity_dirs() -> List[str]:
    dirs = [osp.join(_REPO, 'tests', 'data', 'parity')]
    if os.environ.get('MMEVO_PARITY_DIR'):
        dirs.append(os.environ['MMEVO_PARITY_DIR'])
    dirs.append(osp.join(osp.dirname(_REPO), 'shared', 'parity'))
    return dirs


def find_parity_file(name: str) -> Optional[str]:
    for folder in _parity_dirs():
        path = osp.join(folder, name)
        if osp.isfile(path):
            return path
    return None


def load_parity_fixture(case: str, mmap: bool = False) -> dict:
    """Load ``<case>.pt`` with ``weights_only=True`` (``mmap``: tensors read on access)."""
    path = find_parity_file(f'{case}.pt')
    if path is None:
        raise FileNotFoundError(f'parity fixture {case}.pt not found in {_parity_dirs()}')
    return torch.load(path, map_location='cpu', weights_only=True, mmap=mmap)


def parity_cases() -> List[Tuple[str, str]]:
    """``(case, family)`` of every fixture found (repository copy first), sorted by case."""
    cases = {}
    for folder in _parity_dirs():
        if not osp.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            case = name[:-3]
            if name.endswith('.pt') and case not in cases:
                cases[case] = load_parity_fixture(case, mmap=True)['family']
    return sorted(cases.items())


def load_parity_manifest(family_prefix: str = '') -> List[dict]:
    """Variants of the parity manifest whose family starts with ``family_prefix``.

    The full ``manifest.json`` (``../shared/parity``) when present, else the per-family
    ``manifest_<family>.json`` copies in ``tests/data/parity`` (all of them for no prefix).
    """
    path = find_parity_file('manifest.json')
    if path is not None:
        paths = [path]
    else:
        paths = sorted({osp.join(folder, name) for folder in _parity_dirs() if osp.isdir(folder)
                        for name in os.listdir(folder)
                        if name.startswith(f'manifest_{family_prefix}') and name.endswith('.json')})
    if not paths:
        raise FileNotFoundError(f'no parity manifest found in {_parity_dirs()}')
    variants: Dict[str, dict] = {}
    for path in paths:
        with open(path) as f:
            for variant in json.load(f)['variants']:
                if variant['family'].startswith(family_prefix):
                    variants.setdefault(variant['variant'], variant)
    return list(variants.values())


def all_stage_outputs(backbone: nn.Module, x: torch.Tensor) -> Sequence[torch.Tensor]:
    """The outputs of every stage of a :class:`~mmevo.models.backbones.StagedBackbone` without
    output norms (what the fixtures' ``stage_outputs`` hold for classifiers)."""
    assert backbone.out_norms is None, 'all_stage_outputs needs a backbone without out_norms'
    saved = backbone.out_indices
    backbone.out_indices = tuple(range(backbone.num_stages))
    try:
        return backbone(x)
    finally:
        backbone.out_indices = saved


class ClassifierUnderTest(nn.Module):
    """``backbone`` + ``head`` with mmevo's converted key layout, as an ImageClassifier has."""

    def __init__(self, backbone: nn.Module, head: Optional[nn.Module] = None):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor):
        feats = self.backbone(x)
        return feats if self.head is None else self.head(feats)


def assert_parity(fixture: dict,
                  model: nn.Module,
                  stage_fn: Optional[Callable[[torch.Tensor], Sequence[torch.Tensor]]] = None,
                  atol: Optional[float] = None,
                  rtol: Optional[float] = None) -> Dict[str, float]:
    """Run ``model`` (eval) on the fixture inputs and compare with the official outputs.

    Args:
        fixture (dict): A loaded parity fixture.
        model (nn.Module): Returns logits (``output_kind == 'logits'``) or the tuple of maps
            (``'multiscale'``).
        stage_fn (callable, optional): Returns the per-stage maps to compare with
            ``stage_outputs`` (classifiers).
        atol, rtol (float, optional): Default to the fixture's tolerances.

    Returns:
        dict: The largest absolute error of the outputs and of the stage maps.
    """
    atol = fixture['atol'] if atol is None else atol
    rtol = fixture['rtol'] if rtol is None else rtol
    stage_outputs = fixture.get('stage_outputs') or [None] * len(fixture['inputs'])
    worst = {'outputs': 0., 'stages': 0.}
    model.eval()
    with torch.no_grad():
        for x, expected, stages in zip(fixture['inputs'], fixture['outputs'], stage_outputs):
            got = model(x)
            got = [got] if torch.is_tensor(got) else list(got)
            exp = [expected] if torch.is_tensor(expected) else list(expected)
            assert len(got) == len(exp), f'{len(got)} outputs vs {len(exp)} expected'
            for g, e in zip(got, exp):
                torch.testing.assert_close(g, e, atol=atol, rtol=rtol)
                worst['outputs'] = max(worst['outputs'], (g - e).abs().max().item())
            if stages is not None and stage_fn is not None:
                got_stages = list(stage_fn(x))
                assert len(got_stages) == len(stages)
                for g, e in zip(got_stages, stages):
                    torch.testing.assert_close(g, e, atol=atol, rtol=rtol)
                    worst['stages'] = max(worst['stages'], (g - e).abs().max().item())
    return worst

# Copyright (c) mmevo contributors. All rights reserved.
"""Argument domains: what a constructor argument or an arch-dict value may be, as data.

A :class:`Domain` is a predicate with a description. Backbones declare theirs beside their arch
tables (``arch_domains``, ``arg_domains``) and :func:`check_value` turns a violation into an
error that names the argument, the value it got and what is allowed::

    ValueError: EATFormer: drop_path_rate=1.0 is out of its domain: a float in [0, 1)
"""
import math
import numbers
from typing import Any, Callable, Optional, Sequence


class Domain:
    """A set of allowed values: ``check(value) -> bool`` and a description for errors.

    Args:
        check (callable): Returns True for allowed values (may raise ``TypeError`` for values
            of the wrong type, which counts as not allowed).
        text (str): What is allowed, e.g. ``'a positive int'``.
    """

    def __init__(self, check: Callable[[Any], bool], text: str):
        self._check = check
        self.text = text

    def __contains__(self, value: Any) -> bool:
        try:
            return bool(self._check(value))
        except (TypeError, ValueError):
            return False

    def __repr__(self) -> str:
        return f'Domain({self.text})'

    def __or__(self, other: 'Domain') -> 'Domain':
        return Domain(lambda v: v in self or v in other, f'{self.text} or {other.text}')


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def integer(low: Optional[int] = None, high: Optional[int] = None) -> Domain:
    """An int in ``[low, high]`` (bools are not ints here)."""
    if low is not None and high is not None:
        text = f'an int in [{low}, {high}]'
    elif low == 1:
        text = 'a positive int'
    elif low == 0:
        text = 'a non-negative int'
    elif low is not None:
        text = f'an int >= {low}'
    else:
        text = 'an int'
    return Domain(
        lambda v: _is_int(v) and (low is None or v >= low) and (high is None or v <= high), text)


def real(low: float, high: float, high_open: bool = False, low_open: bool = False) -> Domain:
    """A finite float (or int) in the interval ``[low, high]``, ends open as asked."""
    text = f"a float in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    def check(v):
        if not _is_real(v) or not math.isfinite(v):
            return False
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    return Domain(check, text)


def one_of(*choices) -> Domain:
    """One of ``choices`` (compared with ``==``)."""
    return Domain(lambda v: any(v == c and type(v) is type(c) for c in choices),
                  'one of ' + ', '.join(repr(c) for c in choices))


BOOL = Domain(lambda v: isinstance(v, bool), 'True or False')
POSITIVE_INT = integer(1)
NON_NEGATIVE_INT = integer(0)
POSITIVE_REAL = Domain(lambda v: _is_real(v) and math.isfinite(v) and v > 0, 'a positive float')
PROBABILITY = real(0, 1, high_open=True)
NONE = Domain(lambda v: v is None, 'None')


def sequence_of(item: Domain, length: Optional[int] = None, min_length: int = 1) -> Domain:
    """A list or tuple whose items are all in ``item`` (of ``length`` items when given)."""
    size = f'{length} ' if length is not None else ''
    text = f'a list of {size}items, each {item.text}'

    def check(v):
        if not isinstance(v, (list, tuple)):
            return False
        if length is not None and len(v) != length or len(v) < min_length:
            return False
        return all(x in item for x in v)

    return Domain(check, text)


def check_value(owner: str, name: str, value: Any, domain: Domain) -> None:
    """Raise ``ValueError`` naming ``owner``, ``name``, the value and the domain unless
    ``value in domain``."""
    if value in domain:
        return
    raise ValueError(f'{owner}: {name}={value!r} is out of its domain: {domain.text}')


def check_values(owner: str, values: dict, domains: dict, prefix: str = '') -> None:
    """:func:`check_value` for every key of ``domains`` present in ``values``."""
    for name, domain in domains.items():
        if name in values:
            check_value(owner, f'{prefix}{name}', values[name], domain)


def per_stage(item: Domain, num_stages: int) -> Domain:
    """One value per stage: :func:`sequence_of` with ``length=num_stages``."""
    return sequence_of(item, length=num_stages)


def describe(values: Sequence[Any]) -> str:
    return ', '.join(repr(v) for v in values)

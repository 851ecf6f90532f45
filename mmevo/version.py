# Copyright (c) mmevo contributors. All rights reserved.
import re

__version__ = '0.1.0'


def parse_version_info(version_str: str) -> tuple:
    """Parse ``'0.1.0rc1'`` into ``(0, 1, 0, 'rc1')``."""
    match = re.fullmatch(r'(\d+)\.(\d+)\.(\d+)(.*)', version_str)
    if match is None:
        raise ValueError(f'invalid version string {version_str!r}')
    major, minor, patch, suffix = match.groups()
    info = (int(major), int(minor), int(patch))
    return info + (suffix, ) if suffix else info


version_info = parse_version_info(__version__)

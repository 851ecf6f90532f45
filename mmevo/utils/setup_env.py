# Copyright (c) mmevo contributors. All rights reserved.
from mmengine.config.utils import MODULE2PACKAGE


def register_mmevo_config_prefix() -> None:
    """Allow ``_base_ = 'mmevo::<path>'`` in configs.

    MMEngine resolves ``pkg::path`` only for packages listed in ``MODULE2PACKAGE``
    (open-mmlab/mmengine#1410); adding mmevo there is all it takes, the files are then found in
    the installed package's ``.mim/configs`` like mmdet's.
    """
    MODULE2PACKAGE.setdefault('mmevo', 'mmevo')

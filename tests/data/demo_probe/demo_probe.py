# Copyright (c) mmevo contributors. All rights reserved.
"""A hook recording, per rank, the iteration and a digest of the model weights at the start and
the end of training (``digest_<when>_rank<r>.json`` in the work dir). Imported through a config's
``custom_imports`` with this folder on ``PYTHONPATH``."""
import hashlib
import json
import os.path as osp

from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS


def state_digest(state_dict) -> dict:
    """SHA-1 of the bytes of every floating-point tensor, by name (equal iff bit-identical)."""
    return {
        k: hashlib.sha1(v.detach().cpu().contiguous().numpy().tobytes()).hexdigest()
        for k, v in state_dict.items() if v.is_floating_point()
    }


@HOOKS.register_module()
class StateDigestHook(Hook):

    priority = 'VERY_LOW'

    def _dump(self, runner, when: str) -> None:
        rank, world_size = get_dist_info()
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        record = dict(rank=rank, world_size=world_size, epoch=runner.epoch, iter=runner.iter,
                      digest=state_digest(model.state_dict()))
        with open(osp.join(runner.work_dir, f'digest_{when}_rank{rank}.json'), 'w') as f:
            json.dump(record, f)

    def before_train(self, runner) -> None:
        self._dump(runner, 'before')

    def after_train(self, runner) -> None:
        self._dump(runner, 'after')

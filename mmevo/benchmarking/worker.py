# Copyright (c) mmevo contributors. All rights reserved.
"""The measuring process: ``python -m mmevo.benchmarking.worker SPEC_JSON RESULT_JSON``.

Started by :func:`mmevo.benchmarking.runner.launch` in a fresh interpreter, so that peak memory
is this variant's alone and the malloc settings are in place before the interpreter starts.
``SPEC_JSON`` holds one run's settings (:func:`~.measuring.measure`) or ``{"alternate": [...]}``
(:func:`~.measuring.measure_alternating`, written as ``{"results": [...]}``).
"""
import json
import sys

from .measuring import measure, measure_alternating


def main(spec_file: str, out_file: str) -> None:
    with open(spec_file) as f:
        spec = json.load(f)
    if 'alternate' in spec:
        result = dict(results=measure_alternating(spec['alternate']))
    else:
        result = measure(spec)
    with open(out_file, 'w') as f:
        json.dump(result, f)


if __name__ == '__main__':
    main(*sys.argv[1:])

# Copyright (c) mmevo contributors. All rights reserved.
"""``tools/analysis_tools/benchmark.py`` and :mod:`mmevo.benchmarking` run on CPU and report what
they promise.

No timing is asserted: speed is measured by the tool, not by tests.
"""
import json
import os.path as osp
import sys

import pytest
import torch
from tool_helpers import REPO, assert_ok, load_tool, run_tool

from mmevo.benchmarking import measure, memory, plan_jobs, roofline, stats, system
from mmevo.benchmarking.runner import parse_variant

benchmark = load_tool('analysis_tools/benchmark.py')

MOBILE = osp.join(REPO, 'configs', 'eatformer', 'eatformer-mobile_8xb128_in1k.py')
MASK_RCNN_T = osp.join(REPO, 'configs', 'mask_rcnn', 'eatformer_t_1x.py')

RESULT_KEYS = {
    'label', 'config', 'mode', 'batch_size', 'shape', 'warmup', 'iters', 'threads', 'dtype',
    'channels_last', 'compile', 'with_cp', 'device', 'backbone_only', 'cfg_options', 'params',
    'latency_ms', 'throughput', 'first_iter_s', 'memory_kind', 'peak_memory_mb',
    'peak_memory_delta_mb', 'baseline_memory_mb', 'threads_used', 'page_faults_per_iter', 'fused',
    'other_load', 'attempts'
}


def test_cpu_run_with_variants_writes_json(tmp_path):
    out = str(tmp_path / 'bench.json')
    proc = run_tool([
        'analysis_tools/benchmark.py', MOBILE, '--batch-size', '2', '--shape', '64', '64',
        '--warmup', '1', '--iters', '2', '--threads', '1', '--json', out, '--profile', '5',
        '--fuse', '--mode', 'forward', '--compare',
        'model.backbone.with_cp=True;channels_last=true;dtype=bf16;mode=train'
    ], cwd=str(tmp_path), timeout=600)
    assert_ok(proc)
    with open(out) as f:
        report = json.load(f)
    assert {'date', 'command', 'machine', 'malloc_env', 'loadavg_before',
            'loadavg_after'} <= set(report['meta'])
    results = report['results']
    variant = 'model.backbone.with_cp=True;channels_last=true;dtype=bf16;mode=train'
    assert [(r['label'], r['mode']) for r in results] == [('base', 'forward'), (variant, 'train')]
    for res in results:
        assert 'error' not in res, res.get('error')
        assert RESULT_KEYS <= set(res), RESULT_KEYS - set(res)
        assert set(res['latency_ms']) == {'median', 'p90', 'mean', 'min', 'max'}
        assert res['latency_ms']['min'] <= res['latency_ms']['median'] <= \
            res['latency_ms']['p90'] <= res['latency_ms']['max']
        assert res['throughput'] > 0 and res['peak_memory_mb'] > 0
        assert res['shape'] == [64, 64] and res['batch_size'] == 2 and res['threads_used'] == 1
        assert res['memory_kind'].startswith('rss')
        assert res['profile']['top'] and res['profile']['top'][0]['self_cpu_ms'] >= 0
    assert results[1]['cfg_options'] == ['model.backbone.with_cp=True']
    assert results[1]['channels_last'] and results[1]['dtype'] == 'bf16'
    assert results[1]['optimizer'] == 'config' and results[0]['optimizer'] is None
    # --fuse folds the inference model only
    assert [r['fused'] for r in results] == [True, False]
    # the printed table has ratios against the first variant
    assert '| variant | mode |' in proc.stdout and '1.00x' in proc.stdout


def test_backbone_only_train_of_a_detection_config():
    """The measuring function itself (in this process): mmdet scope, backbone-only training."""
    import torch
    threads = torch.get_num_threads()
    spec = dict(
        label='base', config=MASK_RCNN_T, cfg_options=[], mode='train', batch_size=1,
        shape=[96, 128], warmup=0, iters=1, threads=1, dtype='fp32', channels_last=False,
        compile=False, with_cp=False, device='cpu', backbone_only=True, profile_ops=0)
    try:
        res = measure(spec)
    finally:
        torch.set_num_threads(threads)
    assert res['backbone_only'] and res['mode'] == 'train' and res['scope'] == 'mmdet'
    assert res['shape'] == [96, 128] and res['optimizer'] == 'config'
    assert res['params'] < 6e6  # the backbone alone
    assert res['throughput'] > 0


def _in_process(**overrides) -> dict:
    import torch
    threads = torch.get_num_threads()
    spec = dict(
        label='base', config=MOBILE, cfg_options=[], mode='forward', batch_size=1,
        shape=[64, 64], warmup=0, iters=1, threads=1, dtype='fp32', channels_last=False,
        compile=False, with_cp=False, fuse=False, reference=False, device='cpu',
        backbone_only=False, profile_ops=3)
    spec.update(overrides)
    try:
        return measure(spec)
    finally:
        torch.set_num_threads(threads)


def test_reference_baseline_runs_the_straightforward_formulation():
    """--reference swaps in mmevo.testing.as_reference: plain convolutions, BatchNorms and
    activations (no fused oneDNN conv + post-op in the profile) on the same model, for forward
    and training steps."""
    for mode in ('forward', 'train'):
        fast = _in_process(mode=mode)
        ref = _in_process(mode=mode, reference=True)
        assert ref['reference'] and ref['params'] == fast['params'] and ref['throughput'] > 0
    ops = lambda res: ' '.join(row['name'] for row in res['profile']['top'])  # noqa: E731
    fast = _in_process(profile_ops=200)
    ref = _in_process(reference=True, profile_ops=200)
    fused = 'mkldnn::_convolution_pointwise'
    assert fused in ops(fast) and fused not in ops(ref)
    assert 'aten::native_batch_norm' in ops(ref) and 'aten::softmax' in ops(ref)
    with pytest.raises(ValueError, match='neither with_cp nor fuse'):
        _in_process(mode='train', reference=True, with_cp=True)


def test_variant_parsing():
    base = dict(cfg_options=['a=1'], dtype='fp32', mode='both', channels_last=False,
                compile=False, with_cp=False, batch_size=32, threads=2)
    run = parse_variant('model.backbone.with_cp=True;dtype=bf16;batch_size=8', base)
    assert run['cfg_options'] == ['a=1', 'model.backbone.with_cp=True']
    assert (run['dtype'], run['batch_size'], run['label']) == (
        'bf16', 8, 'model.backbone.with_cp=True;dtype=bf16;batch_size=8')
    assert base['cfg_options'] == ['a=1'] and base['dtype'] == 'fp32'
    assert parse_variant('compile=1;channels_last=yes', base)['compile'] is True
    assert parse_variant('reference=false', dict(base, reference=True))['reference'] \
        is False
    with pytest.raises(ValueError):
        parse_variant('dtype=fp8', base)
    with pytest.raises(ValueError):
        parse_variant('nonsense', base)


def test_statistics():
    assert stats.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 50) == 3.0
    assert stats.percentile([1.0, 2.0], 90) == pytest.approx(1.9)
    assert stats.percentile([7.0], 90) == 7.0
    times = [0.004, 0.001, 0.003, 0.002]  # seconds
    assert stats.latency_stats(times) == dict(median=2.5, p90=3.7, mean=2.5, min=1.0, max=4.0)
    assert stats.throughput(8, times) == 3200.0  # 8 images at the median 2.5 ms
    # same-turn ratios: first / this, per turn; their median, lowest and highest
    assert stats.median_paired_ratio([1.0, 2.0, 4.0], [2.0, 2.0, 1.0]) == (1.0, 0.5, 4.0)


EXTERNAL_DIR = osp.join(REPO, 'tests', 'data', 'external_model')


def test_external_model_on_the_same_harness():
    """external=MODULE:FACTORY times another implementation's model (forward and a training
    step with the config's optimizer)."""
    for mode in ('forward', 'train'):
        res = _in_process(mode=mode, external='tiny_classifier:tiny_classifier',
                          pythonpath=[EXTERNAL_DIR])
        assert res['throughput'] > 0
        assert res['params'] == 3 * 8 * 9 + 8 + 16 + 8 * 10 + 10
    assert res['optimizer'] == 'config'
    with pytest.raises(TypeError, match='not an nn.Module'):
        _in_process(external='tiny_classifier:not_a_module', pythonpath=[EXTERNAL_DIR])
    with pytest.raises(ValueError, match='no reference, with_cp or fuse'):
        _in_process(external='tiny_classifier:tiny_classifier', pythonpath=[EXTERNAL_DIR],
                    fuse=True)
    base = dict(cfg_options=[], mode='both')
    with pytest.raises(ValueError, match='MODULE:FACTORY'):
        parse_variant('external=tiny_classifier', base)


def test_malloc_modes_set_the_worker_environment(monkeypatch):
    for key in memory.MALLOC_ENV:
        monkeypatch.delenv(key, raising=False)
    fast = system.worker_env(2)
    exact = system.worker_env(2, 'exact')
    assert fast['MALLOC_MMAP_MAX_'] == '0' and fast['OMP_NUM_THREADS'] == '2'
    assert exact['MALLOC_MMAP_THRESHOLD_'] == str(128 * 1024) and exact['MALLOC_TOP_PAD_'] == '0'
    assert benchmark.parse_args([MOBILE, '--malloc', 'exact']).malloc == 'exact'


def test_alternate_times_variants_in_turn_in_one_process(tmp_path):
    out = str(tmp_path / 'alternate.json')
    proc = run_tool([
        'analysis_tools/benchmark.py', MOBILE, '--batch-size', '1', '--shape', '64', '64',
        '--warmup', '0', '--iters', '3', '--threads', '1', '--mode', 'forward', '--alternate',
        '--roofline', '--json', out, '--pythonpath', EXTERNAL_DIR, '--compare',
        'external=tiny_classifier:tiny_classifier'
    ], cwd=str(tmp_path), timeout=600)
    assert_ok(proc)
    assert '[benchmark] forward, alternating base, external=tiny_classifier' in proc.stdout
    with open(out) as f:
        base, external = json.load(f)['results']
    assert external['external'] == 'tiny_classifier:tiny_classifier'
    for res in (base, external):
        assert len(res['iteration_ms']) == 3 and res['throughput'] > 0
        assert res['peak_memory_mb'] is None  # memory is not attributed to variants
    # the ratio is the median over turns of the same-turn throughput ratios
    assert base['paired_throughput_ratio'] == 1.0
    ratios = sorted(b / e for b, e in zip(base['iteration_ms'], external['iteration_ms']))
    assert external['paired_throughput_ratio'] == pytest.approx(ratios[1], rel=0.05)
    low, high = external['paired_throughput_ratio_range']
    assert low <= external['paired_throughput_ratio'] <= high
    # the table shows that ratio, and no memory
    row = [line for line in proc.stdout.splitlines() if line.startswith('| external=')][0]
    assert f"| {external['paired_throughput_ratio']:.2f}x |" in row and '| - |' in row
    # --roofline: both models' multiply-adds (the external one counted like mmevo's), against
    # one matrix-multiply peak measured in the same process
    from mmevo.utils.flops import analyze_flops
    sys.path.insert(0, EXTERNAL_DIR)
    from tiny_classifier import tiny_classifier
    expected = analyze_flops(tiny_classifier().eval(), torch.randn(1, 3, 64, 64))[0].flops
    assert external['roofline_stats']['macs_per_image'] == expected
    assert base['roofline_stats']['peak_by_kernel_gmacs'] == external['roofline_stats'][
        'peak_by_kernel_gmacs']
    assert 'Forward multiply-adds against the matrix-multiply peak' in proc.stdout
    assert sum(line.startswith(('| base |', '| external=')) for line in
               proc.stdout.split('(--roofline):')[1].splitlines()) == 2


def test_roofline_reports_multiply_adds_against_the_matmul_peak(monkeypatch):
    """--roofline: the forward's multiply-adds (as get_flops.py counts them), the achieved rate,
    its fraction of the machine's best dense product and the latency at that peak."""
    from mmengine.config import Config

    from mmevo.utils.flops import get_model_complexity
    monkeypatch.setattr(roofline, 'PEAK_MM_SIZE', 512)
    monkeypatch.setattr(roofline, 'PEAK_CONV_INPUT', (2, 512, 8, 8))
    res = _in_process(roofline=True, batch_size=2, profile_ops=0)
    roof = res['roofline_stats']
    expected = get_model_complexity(Config.fromfile(MOBILE), shape=(64, 64))[0].flops
    assert roof['macs_per_image'] == expected
    assert set(roof['peak_by_kernel_gmacs']) == {'mm', 'conv1x1'}
    assert roof['peak_gmacs'] == max(roof['peak_by_kernel_gmacs'].values()) > 0
    seconds = res['latency_ms']['median'] / 1e3
    assert roof['achieved_gmacs'] == pytest.approx(2 * expected / seconds / 1e9, rel=1e-3)
    assert roof['fraction_of_peak'] == pytest.approx(
        roof['achieved_gmacs'] / roof['peak_gmacs'], rel=1e-2)
    assert roof['floor_ms'] == pytest.approx(2 * expected / (roof['peak_gmacs'] * 1e9) * 1e3,
                                             rel=1e-2)
    assert roof['floor_ms'] < res['latency_ms']['median']
    # a training step has no roofline (its work is not the forward's multiply-adds)
    assert 'roofline_stats' not in _in_process(mode='train', roofline=True, profile_ops=0)


def test_command_line_checks(capsys):
    """Bad options stop before anything is measured, with a message naming the problem."""
    # jobs in measuring order: a variant's mode=both (the default) is forward, then train
    args = benchmark.parse_args([MOBILE, '--compare', 'dtype=bf16;mode=forward',
                                 'mode=train;threads=1'])
    assert [(run['label'], mode) for run, mode in args.jobs] == [
        ('base', 'forward'), ('base', 'train'), ('dtype=bf16;mode=forward', 'forward'),
        ('mode=train;threads=1', 'train')]
    assert [run['dtype'] for run, _ in args.jobs] == ['fp32', 'fp32', 'bf16', 'fp32']
    for argv, message in (
        (['--alternate', '--profile', '3'], 'no --profile'),
        (['--alternate', '--compare', 'threads=2'], 'one threads for all variants of a mode'),
        (['--compare', 'dtype=fp8'], 'dtype must be one of'),
        (['--shape', '1', '2', '3'], '--shape takes H W'),
        (['--rounds', '2'], 'unrecognized arguments: --rounds'),
    ):
        with pytest.raises(SystemExit):
            benchmark.parse_args([MOBILE, *argv])
        assert message in capsys.readouterr().err
    # --alternate: variants of different modes may differ in threads (one process per mode)
    base = benchmark.parse_args([MOBILE, '--threads', '1', '--mode', 'forward']).jobs[0][0]
    assert len(plan_jobs(base, ['mode=train;threads=2'], alternate=True)) == 2

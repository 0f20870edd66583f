# Copyright (c) mmsmlp contributors. All rights reserved.
"""seg_speed.py's evaluation summary: images/s from the test log's windows
after the first."""
import pytest

from .conftest import import_tool

seg_speed = import_tool('analysis_tools/seg_speed.py')

# mmengine 0.10's test log (tools/test.py, logger interval 2)
PREFIX = '12/01 06:12:16 - mmengine - INFO - Iter(test) '
LOG = '\n'.join(PREFIX + line for line in [
    '[ 2/6]    eta: 0:00:12  time: 6.2744  data_time: 0.0137',
    '[ 4/6]    eta: 0:00:05  time: 0.2500  data_time: 0.0038',
    '[ 6/6]    eta: 0:00:00  time: 0.2000  data_time: 0.0022',
    '[6/6]    aAcc: 71.2000  mIoU: 26.4500  mAcc: 35.4400  '
    'data_time: 0.0069  time: 2.2248',
])


def test_eval_summary_leaves_out_the_first_window():
    summary = seg_speed.summarise_test(LOG, interval=2)
    assert summary['windows'] == 2
    assert summary['time'] == pytest.approx(0.225)
    assert summary['images_per_s'] == pytest.approx(1 / 0.225)
    assert summary['data_time'] == pytest.approx(0.003)
    assert summary['mIoU'] == 26.45


def test_eval_summary_needs_a_window_after_the_first():
    first = LOG.splitlines()[0]
    with pytest.raises(RuntimeError, match='raise NUM_VAL'):
        seg_speed.summarise_test(first, interval=2)


def test_test_options_name_the_mode_and_windows():
    opts = seg_speed.test_options('/data', '/work', 'slide', 512, 10, 4)
    assert 'model.test_cfg.mode=slide' in opts
    assert 'model.test_cfg.stride=(341,341)' in opts  # mmseg's 512 configs
    assert 'test_dataloader.dataset.data_root=/data' in opts


def test_smlp_options_go_to_the_smlpnet_runs_only():
    environ = {'SMLP_OPTIONS': ' custom_hooks.2.enabled=False  '
               'env_cfg.cudnn_benchmark=False '}
    assert seg_speed.model_options('smlpnet-t', environ) == [
        'custom_hooks.2.enabled=False', 'env_cfg.cudnn_benchmark=False']
    assert seg_speed.model_options('swin-t', environ) == []
    assert seg_speed.model_options('smlpnet-t', {}) == []
    with pytest.raises(SystemExit, match='key=value.*enabled'):
        seg_speed.model_options('smlpnet-t',
                                {'SMLP_OPTIONS': 'a=1 enabled'})

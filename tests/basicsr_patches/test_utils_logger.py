"""basicsr_patches/behaviour/utils_logger.py: the log says CPU or CUDA; the eta is the time of the iterations left.
Each test fails without its patch."""
import logging

import torch


def test_env_info_says_cpu():
    import basicsr.train
    info = basicsr.train.get_env_info()
    expected = 'CUDA' if torch.cuda.is_available() else 'CPU'
    assert f'Running on: {expected}' in info


def _eta_line(monkeypatch, current_iter, start_iter=0, max_iters=10, seconds=30.0):
    """The log line of basicsr's MessageLogger at ``current_iter``, ``seconds`` after it started."""
    from basicsr.utils import logger as basicsr_logger
    lines = []
    clock = iter([100.0, 100.0 + seconds])
    monkeypatch.setattr(basicsr_logger.time, 'time', lambda: next(clock))
    opt = {'name': 'eta_test', 'logger': {'print_freq': 1, 'use_tb_logger': False}, 'train': {'total_iter': max_iters}}
    message_logger = basicsr_logger.MessageLogger(opt, start_iter)
    monkeypatch.setattr(message_logger, 'logger', type('L', (), {'info': staticmethod(lines.append)}))
    message_logger({'epoch': 1, 'iter': current_iter, 'lrs': [1e-3], 'time': 3.0, 'data_time': 0.1,
                    'l_pix': 0.5})
    assert message_logger.max_iters == max_iters  # the patch leaves the logger as it found it
    return lines[0]


def test_eta_is_zero_at_the_last_iteration_and_counts_the_iterations_left(monkeypatch):
    """basicsr's eta at the last of 10 iterations, 30 s after the start, was 30 s / 11 x (10 - 10 - 1), shown
    as '-1 day, 23:59:58'. Now 0 there, and at iteration 4 of a run started at 0: 30 s / 5 x (10 - 4) = 36 s."""
    last = _eta_line(monkeypatch, current_iter=10, start_iter=0)
    assert '[eta: 0:00:00, ' in last and 'day' not in last
    assert 'l_pix: 5.0000e-01' in last and 'time (data): 3.000 (0.100)' in last
    assert '[eta: 0:00:36, ' in _eta_line(monkeypatch, current_iter=4, start_iter=0)
    assert '[eta: 0:00:20, ' in _eta_line(monkeypatch, current_iter=8, start_iter=6)  # 30 s / 3 x 2
    logging.getLogger('basicsr')  # the real logger was not touched

"""scripts/benchmark.py in its quick mode (tiny networks, one round): the tables it prints are
complete and hold numbers. Timings are never asserted (they belong to the printed tables)."""
import importlib.util
import os.path as osp
import re

import pytest
import torch

SCRIPT = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'scripts', 'benchmark.py')


def _benchmark():
    spec = importlib.util.spec_from_file_location('benchmark_script', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rows(text, title):
    """The data rows of the table under the heading that contains ``title``."""
    block = text.split(title, 1)[1].split('\n\n', 2)[1]
    return [[c.strip() for c in line.strip('|').split('|')] for line in block.splitlines()[2:]]


@pytest.mark.slow
def test_quick_mode_prints_every_table(capsys):
    """Guards the tables' plumbing: a variant missing, a ratio against the wrong row, the memory child
    failing, the data loader not measured."""
    assert _benchmark().main(['--quick', '--threads', '1', '--checkpoint', '--data']) == 0
    out = capsys.readouterr().out
    for arch in ('PromptIR', 'Restormer', 'AirNet'):
        rows = _rows(out, f'#### {arch} (tiny), 32x32')
        assert [r[0] for r in rows] == ['reference', 'ours']
        ref, ours = rows
        assert ref[1] == ours[1] and ref[2] == ours[2]  # same parameters and GMACs: the same network
        assert float(ref[1].split()[0]) > 0 and float(ref[2]) > 0
        assert ref[4] == '1.00x' and ref[6] == '1.00x'
        for row in rows:
            forward, step = float(row[3]), float(row[5])
            assert forward > 0 and step > 0
        assert float(ours[4].rstrip('x')) == pytest.approx(float(ref[3]) / float(ours[3]), rel=0.02)
    checkpoint = _rows(out, '#### grad_checkpoint: PromptIR (tiny)')
    assert [r[0] for r in checkpoint] == ['ours', 'ours + grad_checkpoint']
    memory = [int(r[3]) for r in checkpoint]  # MiB measured in child processes
    assert all(m > 0 for m in memory), memory
    data = _rows(out, '#### AllInOneDataset')
    assert [(r[0], r[1]) for r in data] == [('folders', '1'), ('folders', '2'), ('LMDB', '1'), ('LMDB', '2')]
    assert all(float(r[2]) > 0 for r in data)
    assert re.search(r'Training step consumption .*: [0-9.]+ samples/s', out)


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message on machines without CUDA')
def test_cuda_rows_fail_clearly_without_cuda(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _benchmark().main(['--quick', '--device', 'cuda'])
    assert exit_info.value.code == 2
    assert 'needs a CUDA device' in capsys.readouterr().err

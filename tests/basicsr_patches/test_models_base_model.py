"""basicsr_patches/behaviour/models_base_model.py: atomic checkpoint writes. Each test fails without its patch."""
import os

import pytest
import torch


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    from basicsr.models import base_model
    target = tmp_path / 'net_g_1.pth'
    base_model.torch.save({'params': {'w': torch.ones(2)}}, target)
    good = target.read_bytes()

    def dies_mid_write(obj, f, *args, **kwargs):
        f.write(b'half a checkpoint')
        raise KeyboardInterrupt  # a kill arriving during the write

    monkeypatch.setattr(torch, 'save', dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        base_model.torch.save({'params': {'w': torch.zeros(2)}}, target)
    assert target.read_bytes() == good
    assert os.listdir(tmp_path) == ['net_g_1.pth']  # no temporary file left behind

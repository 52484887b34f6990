"""Loading a checkpoint never runs pickled code; writes are atomic."""
import os
import pickle
import warnings

import pytest
import torch

from promptir_basicsr.errors import CheckpointError
from promptir_basicsr.utils.files import atomic_save
from promptir_basicsr.weights.files import load_checkpoint


class _RunsCodeWhenUnpickled:

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f'touch {self.marker}', ))


@pytest.fixture
def malicious_checkpoint(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'params': {'w': torch.zeros(1)}, 'payload': _RunsCodeWhenUnpickled(marker)}, path)
    return path, marker


def test_load_checkpoint_refuses_pickled_code(malicious_checkpoint):
    path, marker = malicious_checkpoint
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and 'could run code' in str(err.value)
    assert not marker.exists()


def test_basicsr_load_network_and_resume_refuse_pickled_code(malicious_checkpoint, tmp_path):
    import basicsr.train
    from basicsr.models.base_model import BaseModel
    path, marker = malicious_checkpoint
    model = BaseModel({'num_gpu': 0, 'is_train': False, 'dist': False})
    with pytest.raises(CheckpointError, match='Refusing to load'):
        model.load_network(torch.nn.Conv2d(1, 1, 1), str(path))
    opt = {'auto_resume': False, 'path': {'resume_state': str(path)}}
    with pytest.raises(CheckpointError, match='Refusing to load'):
        basicsr.train.load_resume_state(opt)
    assert not marker.exists()


def test_files_of_other_kinds_are_named_not_loaded(tmp_path, malicious_checkpoint):
    """A TorchScript archive (never handed to torch.load, which would warn and suggest weights_only=False) and an
    option file (by extension, or a YAML mapping by content) are refused as what they are; a pickle with code
    keeps its refusal and the conversion hint; a zip that is a plain torch.save file is no TorchScript archive."""
    from promptir_basicsr.weights.files import NotWeightsError, is_torchscript_archive, load_checkpoint_for_conversion
    scripted = torch.jit.trace(torch.nn.Conv2d(3, 3, 1), torch.rand(1, 3, 4, 4))
    torch.jit.save(scripted, str(tmp_path / 'net.pt'))
    torch.save({'w': torch.zeros(1)}, tmp_path / 'plain.pt')
    assert is_torchscript_archive(tmp_path / 'net.pt') and not is_torchscript_archive(tmp_path / 'plain.pt')
    assert not is_torchscript_archive(malicious_checkpoint[0]) and not is_torchscript_archive(tmp_path / 'none.pt')
    (tmp_path / 'a.YAML').write_text('just: text\n')
    (tmp_path / 'train.cfg').write_text('network_g:\n  type: PromptIR\n')
    (tmp_path / 'list.cfg').write_text('- a\n- b\n')  # YAML, but no option file (a list)
    (tmp_path / 'binary.cfg').write_bytes(b'name: x\0\xff')
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # torch.load's TorchScript warning would be an error here
        for load in (load_checkpoint, load_checkpoint_for_conversion):
            with pytest.raises(NotWeightsError, match=r'net\.pt is a TorchScript module .* \(\.pth, \.ckpt or '
                                                      r'\.safetensors\)$'):
                load(tmp_path / 'net.pt')
            for name in ('a.YAML', 'train.cfg'):
                with pytest.raises(NotWeightsError, match=rf'{name} is an option file \(YAML\), not weights: use -opt'):
                    load(tmp_path / name)
    (tmp_path / 'text.pth').write_text('just some text\n')  # torch.load fails with a KeyError on this one
    for name, reason in (('list.cfg', 'Unsupported operand 45'), ('binary.cfg', 'Unsupported operand 110'),
                         ('text.pth', 'KeyError: ')):
        for load in (load_checkpoint, load_checkpoint_for_conversion):  # not "could run code", no unsafe advice
            with pytest.raises(CheckpointError) as err:
                load(tmp_path / name)
            assert str(err.value).startswith(f'Cannot read {tmp_path / name} as PyTorch weights (.pth/.ckpt): {reason}')
            assert not isinstance(err.value, NotWeightsError) and 'weights_only' not in str(err.value)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint_for_conversion(malicious_checkpoint[0])  # a real pickle keeps the conversion recipe
    assert 'rejected it: Trying to load unsupported GLOBAL posix.system whose module posix is blocked)' in str(err.value)
    assert 'The file needs these Python globals: posix.system. To convert it anyway' in str(err.value)


def test_plain_checkpoints_still_load(tmp_path):
    state = {'params': {'w': torch.arange(3.)}, 'iter': 5, 'best': {'psnr': 31.5}}
    atomic_save(state, tmp_path / 'ok.pth')
    loaded = load_checkpoint(tmp_path / 'ok.pth')
    assert loaded['iter'] == 5 and torch.equal(loaded['params']['w'], torch.arange(3.))
    with pytest.raises(FileNotFoundError, match='Checkpoint not found'):
        load_checkpoint(tmp_path / 'missing.pth')


def test_atomic_save_keeps_the_old_file_when_the_write_fails(tmp_path):
    atomic_save({'v': 1}, tmp_path / 'a.state')
    with pytest.raises((pickle.PicklingError, AttributeError)):
        atomic_save({'v': lambda: 0}, tmp_path / 'a.state')
    assert load_checkpoint(tmp_path / 'a.state') == {'v': 1}
    assert os.listdir(tmp_path) == ['a.state']


def test_strict_load_of_a_mismatching_checkpoint_lists_the_keys(tmp_path):
    from basicsr.models.base_model import BaseModel
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 3, 1))
    other = {'0.weight': torch.zeros(4, 3, 3, 3), '2.weight': torch.zeros(3, 4, 1, 1), '1.weight': torch.zeros(3, 2)}
    atomic_save({'params': other}, tmp_path / 'other.pth')
    model = BaseModel({'num_gpu': 0, 'is_train': False, 'dist': False})
    with pytest.raises(CheckpointError) as err:
        model.load_network(net, str(tmp_path / 'other.pth'), strict=True)
    msg = str(err.value)
    assert str(tmp_path / 'other.pth') in msg and 'does not match Sequential' in msg
    assert 'missing in the file (2): 0.bias, 1.bias' in msg
    assert 'unexpected in the file (1): 2.weight' in msg
    assert 'shape mismatches (1): 1.weight (3, 2) vs network (3, 4, 1, 1)' in msg
    assert 'basicsr convert' in msg and 'strict_load_g: false' in msg


def test_atomic_save_fsyncs_the_complete_file_before_the_rename(tmp_path, monkeypatch):
    """Guards the fsync: without it, after a power loss the rename can be on disk while the data is
    not, leaving an empty or truncated file under the final name."""
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        info = os.fstat(fd)
        events.append(('fsync', info.st_ino, info.st_size))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(('replace', os.stat(src).st_ino, os.path.basename(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, 'fsync', fsync)
    monkeypatch.setattr(os, 'replace', replace)
    atomic_save({'w': torch.arange(1000.)}, tmp_path / 'net.pth')
    final = os.stat(tmp_path / 'net.pth')
    assert [e[0] for e in events] == ['fsync', 'replace']
    # the file synced is the one renamed, already complete (same inode, final size)
    assert events[0][1:] == (final.st_ino, final.st_size) and events[1][1:] == (final.st_ino, 'net.pth')


def test_atomic_save_writes_a_hidden_tmp_file_beside_the_target_and_passes_save_options(tmp_path, monkeypatch):
    """Guards the temporary name ('.<name>.<random>.tmp' in the target's folder: never matched by a scan
    for *.pth / *.state, and renamed within one file system) and the forwarding of torch.save's options."""
    import zipfile
    names = []
    real_replace = os.replace

    def spy(src, dst):
        names.append(src)
        return real_replace(src, dst)

    monkeypatch.setattr(os, 'replace', spy)
    atomic_save({'w': torch.ones(1)}, tmp_path / 'sub' / 'net_g_5.pth')
    folder, name = os.path.split(names[0])
    assert folder == str(tmp_path / 'sub') and name.startswith('.net_g_5.pth.') and name.endswith('.tmp')
    atomic_save({'w': torch.ones(1)}, tmp_path / 'legacy_kw.pth', _use_new_zipfile_serialization=False)
    atomic_save({'w': torch.ones(1)}, tmp_path / 'legacy_pos.pth', pickle, 2, False)
    for path in (tmp_path / 'legacy_kw.pth', tmp_path / 'legacy_pos.pth'):
        assert not zipfile.is_zipfile(path) and torch.equal(load_checkpoint(path)['w'], torch.ones(1))
    assert zipfile.is_zipfile(tmp_path / 'sub' / 'net_g_5.pth')


def test_atomic_text_and_bytes_writes_and_their_file_mode(tmp_path):
    """Guards atomic_write_text/atomic_write_bytes (results tables, images) and the mode of every atomic
    file: what open() would give (0o666 less the umask), not mkstemp's private 0o600 (found by mutation
    testing)."""
    from promptir_basicsr.utils.files import atomic_write_bytes, atomic_write_text
    old_umask = os.umask(0o027)
    try:
        atomic_write_text(tmp_path / 'table.md', 'PSNR 30.00 dB, \u00b5 = 1\n')
        atomic_write_bytes(tmp_path / 'img.bin', b'\x00\xffpng')
        atomic_save({'w': torch.ones(1)}, tmp_path / 'w.pth')
    finally:
        os.umask(old_umask)
    assert (tmp_path / 'table.md').read_text(encoding='utf-8') == 'PSNR 30.00 dB, \u00b5 = 1\n'
    assert (tmp_path / 'img.bin').read_bytes() == b'\x00\xffpng'
    for name in ('table.md', 'img.bin', 'w.pth'):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o640, name
    assert sorted(os.listdir(tmp_path)) == ['img.bin', 'table.md', 'w.pth']  # no temporary file left

"""One test per compat repair; each fails without its repair."""
import os
import os.path as osp
import socket
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from promptir_basicsr import compat
from promptir_basicsr.utils.checkpoints import atomic_save


def test_import_basicsr_needs_and_gets_the_functional_tensor_alias():
    # Without the repair basicsr cannot be imported at all on torchvision >= 0.17.
    bare = subprocess.run([sys.executable, '-c', 'import basicsr'], capture_output=True, text=True)
    assert bare.returncode != 0 and 'functional_tensor' in bare.stderr
    fixed = subprocess.run(
        [sys.executable, '-c', 'import promptir_basicsr, basicsr.data.degradations as d; print(d.rgb_to_grayscale)'],
        capture_output=True, text=True)
    assert fixed.returncode == 0, fixed.stderr


def _opt_with_states(tmp_path, iters, auto_resume=True):
    states = tmp_path / 'root' / 'experiments' / 'run' / 'training_states'
    states.mkdir(parents=True)
    for it in iters:
        atomic_save({'epoch': 0, 'iter': it, 'optimizers': [], 'schedulers': []}, states / f'{it}.state')
    return {
        'name': 'run', 'auto_resume': auto_resume, 'is_train': True, 'network_g': {'type': 'Toy'},
        'path': {'training_states': str(states), 'models': str(states.parent / 'models')},
    }


def test_resume_state_loads_on_cpu(tmp_path):
    import basicsr.train
    opt = _opt_with_states(tmp_path, [4], auto_resume=False)
    opt['path']['resume_state'] = osp.join(opt['path']['training_states'], '4.state')
    state = basicsr.train.load_resume_state(opt)  # basicsr's own calls torch.cuda.current_device()
    assert state['iter'] == 4
    assert opt['path']['pretrain_network_g'].endswith('net_g_4.pth')


def test_auto_resume_picks_the_newest_complete_state(tmp_path):
    import basicsr.train
    opt = _opt_with_states(tmp_path, [2, 10])
    # A kill during a save leaves only a temporary file: it must never be picked.
    (tmp_path / 'root' / 'experiments' / 'run' / 'training_states' / '.12.state.x1y2.tmp').write_bytes(b'trunc')
    state = basicsr.train.load_resume_state(opt)
    assert state is not None and state['iter'] == 10
    assert opt['path']['resume_state'].endswith('10.state')


def test_auto_resume_without_a_state_says_where_it_looked(tmp_path, capsys):
    """Guards against the silent restart from iteration 0 (the README promises this one line)."""
    import basicsr.train
    opt = _opt_with_states(tmp_path, [])
    assert basicsr.train.load_resume_state(opt) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"--auto_resume: no training state in {opt['path']['training_states']}; starting from "
                   'iteration 0 (a run is continued from the directory it was started in).']
    opt['auto_resume'] = False  # no flag, no message
    assert basicsr.train.load_resume_state(opt) is None and capsys.readouterr().err == ''


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_cpu_distributed_init_and_ddp_wrap(monkeypatch):
    import torch.distributed as dist
    from basicsr.models.base_model import BaseModel
    from basicsr.utils.dist_util import init_dist
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(_free_port()))
    start_method = torch.multiprocessing.get_start_method(allow_none=True)
    init_dist('pytorch')  # basicsr: rank % cuda.device_count() -> ZeroDivisionError, and nccl
    try:
        assert dist.get_backend() == 'gloo'
        if not torch.cuda.is_available():  # basicsr set 'spawn': loader workers re-importing everything each epoch
            assert torch.multiprocessing.get_start_method() == 'fork'
        model = BaseModel({'num_gpu': 0, 'is_train': True, 'dist': True})
        net = model.model_to_device(torch.nn.Conv2d(3, 3, 3))
        assert isinstance(net, torch.nn.parallel.DistributedDataParallel)
        assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 6, 6)
    finally:
        dist.destroy_process_group()
        torch.multiprocessing.set_start_method(start_method, force=True)


def _slurm_rank(rank, port, bin_dir, queue):
    """One slurm task: only SLURM_* variables (as srun sets them) and a stand-in `scontrol` on PATH."""
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        os.environ.pop(key, None)
    os.environ.update(SLURM_PROCID=str(rank), SLURM_NTASKS='2', SLURM_LOCALID=str(rank), SLURM_NODELIST='node[7-8]',
                      PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    import torch.distributed as dist

    import promptir_basicsr  # noqa: F401  (the compat repairs)
    from basicsr.utils.dist_util import get_dist_info, init_dist
    init_dist('slurm', port=port)  # what --launcher slurm with dist_params.port does
    try:
        total = torch.tensor([float(rank + 1)])
        dist.all_reduce(total)
        queue.put((rank, get_dist_info(), dist.get_backend(), float(total), {
            k: os.environ[k] for k in ('MASTER_ADDR', 'MASTER_PORT', 'WORLD_SIZE', 'RANK', 'LOCAL_RANK')}))
    finally:
        dist.destroy_process_group()


def test_slurm_launcher_on_cpu_from_the_slurm_environment(tmp_path):
    """Guards the CPU slurm path of basicsr's init_dist: rank, world size and local rank come from SLURM_PROCID,
    SLURM_NTASKS and SLURM_LOCALID, the master address from `scontrol show hostname <nodelist>`, the port from
    dist_params.port; gloo, since there is no CUDA. Two tasks really meet in one process group."""
    import multiprocessing as mp
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    scontrol = bin_dir / 'scontrol'
    scontrol.write_text('#!/bin/sh\n[ "$1 $2 $3" = "show hostname node[7-8]" ] && printf "127.0.0.1\\nnode8\\n"\n')
    scontrol.chmod(0o755)
    port = _free_port()
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    procs = [ctx.Process(target=_slurm_rank, args=(rank, port, str(bin_dir), queue)) for rank in (0, 1)]
    for proc in procs:
        proc.start()
    results = sorted(queue.get(timeout=300) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    for rank, (dist_info, backend, total, env) in [(r[0], r[1:]) for r in results]:
        assert dist_info == (rank, 2) and backend == 'gloo' and total == 3.0  # ranks 1 + 2 summed
        assert env == {'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port), 'WORLD_SIZE': '2', 'RANK': str(rank),
                       'LOCAL_RANK': str(rank)}


def test_jpeg_compression_accepts_float_quality():
    from basicsr.data import degradations
    img = np.random.default_rng(0).random((16, 16, 3), dtype=np.float32)
    out = degradations.add_jpg_compression(img, 30.0)  # OpenCV 5 rejects a float quality
    assert out.shape == img.shape and out.dtype == np.float32
    out2 = degradations.random_add_jpg_compression(img, (30, 40))
    assert np.abs(out2 - img).mean() > 0


def _tiny_lmdb(tmp_path):
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs
    folder = tmp_path / 'imgs'
    folder.mkdir()
    cv2.imwrite(str(folder / 'a.png'), np.full((8, 8, 3), 7, np.uint8))
    make_lmdb_from_imgs(str(folder), str(tmp_path / 'db.lmdb'), ['a.png'], ['a'], map_size=1 << 20)
    return str(tmp_path / 'db.lmdb')


def test_lmdb_opened_twice_in_one_process(tmp_path):
    from basicsr.utils import FileClient, imfrombytes
    db = _tiny_lmdb(tmp_path)
    # Train and val datasets on the same database: py-lmdb 3 refuses the second lmdb.open.
    first = FileClient('lmdb', db_paths=[db], client_keys=['gt'])
    second = FileClient('lmdb', db_paths=[db], client_keys=['gt'])
    for client in (first, second):
        assert imfrombytes(client.get('a', 'gt'), float32=False)[0, 0, 0] == 7


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


def test_env_info_says_cpu():
    import basicsr.train
    info = basicsr.train.get_env_info()
    expected = 'CUDA' if torch.cuda.is_available() else 'CPU'
    assert f'Running on: {expected}' in info


def test_runtime_defaults_for_options_basicsr_indexes_without_checking():
    import basicsr.train
    assert compat._is_ours(basicsr.train.parse_options)
    from promptir_basicsr.options import apply_runtime_defaults
    opt = {'num_gpu': 'auto', 'datasets': {'train': {'prefetch_mode': 'cuda', 'pin_memory': True}},
           'logger': {}, 'val': {'val_freq': 1}}
    apply_runtime_defaults(opt)
    assert opt['logger']['use_tb_logger'] is False
    assert opt['val']['save_img'] is False and opt['val']['suffix'] is None
    if not torch.cuda.is_available():
        assert opt['num_gpu'] == 0
        assert opt['datasets']['train']['prefetch_mode'] == 'cpu'


def _patched_attributes():
    """(owner, attribute) of every basicsr function or module that compat replaces."""
    import basicsr.test
    import basicsr.train
    from basicsr.data import degradations
    from basicsr.models import base_model
    from basicsr.utils import dist_util, file_client
    return [(basicsr.train, 'load_resume_state'), (dist_util, '_init_dist_pytorch'), (dist_util, '_init_dist_slurm'),
            (base_model.BaseModel, 'model_to_device'), (degradations, 'add_jpg_compression'),
            (file_client.LmdbBackend, '__init__'), (base_model, 'torch'), (base_model.BaseModel, 'load_network'),
            (basicsr.train, 'get_env_info'), (basicsr.test, 'get_env_info'), (basicsr.train, 'parse_options'),
            (basicsr.test, 'parse_options'), (basicsr.train, 'create_train_val_dataloader'),
            (basicsr.train, 'dict2str'), (basicsr.test, 'dict2str')]


def test_apply_all_twice_wraps_nothing_twice():
    """Guards against a repair that wraps basicsr's function again on a second apply_all() (model_to_device
    did): every patched attribute must stay the very object the first application installed."""
    before = [getattr(owner, name) for owner, name in _patched_attributes()]
    assert all(compat._is_ours(obj) for obj in before)  # the list above names only our replacements
    compat.apply_all()
    compat.apply_all()
    after = [getattr(owner, name) for owner, name in _patched_attributes()]
    for (owner, name), first, now in zip(_patched_attributes(), before, after):
        assert now is first, f'{getattr(owner, "__name__", owner)}.{name} was replaced again'


def test_epoch_count_covers_total_iter_when_the_last_batch_is_dropped(tiny_data):
    import basicsr.train
    from basicsr.utils import get_root_logger
    from cli_helpers import paired_set
    train = paired_set('train', tiny_data / 'data' / 'train', 'train')  # 6 images
    train.update(batch_size_per_gpu=4, phase='train', scale=1)
    opt = {'datasets': {'train': train}, 'world_size': 1, 'rank': 0, 'num_gpu': 0, 'dist': False,
           'manual_seed': 0, 'train': {'total_iter': 10}}
    loader, _, _, total_epochs, total_iters = basicsr.train.create_train_val_dataloader(opt, get_root_logger())
    # basicsr: ceil(6/4) = 2 iterations per epoch -> ceil(10/2) = 5 epochs (+1) = 6 iterations of real
    # 1-batch epochs. Counted from the loader: 1 per epoch -> 10 epochs.
    assert len(loader) == 1 and total_iters == 10
    assert (total_epochs + 1) * len(loader) >= total_iters

    train['batch_size_per_gpu'] = 8
    with pytest.raises(ValueError, match='6 samples per process are fewer than batch_size_per_gpu'):
        basicsr.train.create_train_val_dataloader(opt, get_root_logger())

"""basicsr_patches/repairs/train.py: resume without CUDA and from the right folder; the full total_iter. Each test fails without its patch."""
import os.path as osp

import pytest

from promptir_basicsr.utils.files import atomic_save


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

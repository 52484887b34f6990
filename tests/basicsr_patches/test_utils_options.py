"""basicsr_patches/repairs/utils_options.py: option values that crash basicsr, and seeding after --force_yml. Each test fails without its patch."""
import torch

from promptir_basicsr.basicsr_patches import marks


def test_runtime_defaults_for_options_basicsr_indexes_without_checking():
    import basicsr.train
    assert marks.is_ours(basicsr.train.parse_options)
    from promptir_basicsr.basicsr_patches.repairs.utils_options import apply_runtime_defaults
    opt = {'num_gpu': 'auto', 'datasets': {'train': {'prefetch_mode': 'cuda', 'pin_memory': True}},
           'logger': {}, 'val': {'val_freq': 1}}
    apply_runtime_defaults(opt)
    assert opt['logger']['use_tb_logger'] is False
    assert opt['val']['save_img'] is False and opt['val']['suffix'] is None
    if not torch.cuda.is_available():
        assert opt['num_gpu'] == 0
        assert opt['datasets']['train']['prefetch_mode'] == 'cpu'


def test_forced_manual_seed_seeds_the_network_too():
    """basicsr seeds before applying --force_yml; the runtime defaults seed again from the forced manual_seed
    (`basicsr ablate` forces one per run). Guards a forced seed that changes only the data loaders."""
    from promptir_basicsr.basicsr_patches.repairs.utils_options import apply_runtime_defaults
    draws = []
    for seed in (3, 4, 3):
        torch.manual_seed(123)
        apply_runtime_defaults({'manual_seed': seed, 'rank': 0, 'num_gpu': 0, 'datasets': {}})
        draws.append(torch.rand(3))
    assert torch.equal(draws[0], draws[2]) and not torch.equal(draws[0], draws[1])
    torch.manual_seed(4)
    assert torch.equal(torch.rand(3), draws[1])

"""Every shipped train and demo option file trains under `torchrun --nproc_per_node=2` (gloo on the CPU) with
the `find_unused_parameters` it ships with (false or absent; true for MoCE-IR, whose unchosen experts get no
gradient), and the two replicas end identical.

Each file runs as shipped except for what a CPU test cannot afford (a tiny network, 2 iterations, small
crops, no loader workers), given with --force_yml. The recipe files read a miniature copy of the official
data layout, the demo files the generated demo data (option `demo_data: true`), all in one folder.
"""
import glob
import tempfile
import os.path as osp
import subprocess

import pytest
import torch
from cli_helpers import RANK_WEIGHTS_PLUGIN, make_official_layout, torchrun_train

from promptir_basicsr.commands.ablate import read_comparison
from promptir_basicsr.options.files import read_option_file

pytestmark = pytest.mark.slow

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FILES = sorted(glob.glob(osp.join(REPO, 'options', 'train', '*.yml'))) + sorted(
    p for p in glob.glob(osp.join(REPO, 'options', 'demo', '*.yml')) if not p.endswith('_test.yml')) + [
    # the one ablation variant with new DDP traffic: PromptIR's CBDE (MoCo keys all-gathered, its projection head
    # reached only through the contrastive loss); the others change which modules exist, not how they train
    read_comparison(osp.join(REPO, 'options', 'ablation', 'demo', 'e_prompt_source.yml'), tempfile.mkdtemp())[0][1]]

TINY_NETWORKS = {
    'PromptIR': ['dim=8', 'num_blocks=[1,1,1,1]', 'num_refinement_blocks=1', 'heads=[1,1,1,1]',
                 'ffn_expansion_factor=1.0', 'prompt_dims=[8,8,16]', 'prompt_sizes=[8,4,4]'],
    'Restormer': ['dim=8', 'num_blocks=[1,1,1,1]', 'num_refinement_blocks=1', 'heads=[1,1,1,1]',
                  'ffn_expansion_factor=1.0'],
    'AirNet': ['n_feats=8', 'n_groups=1', 'n_blocks=1', 'encoder_widths=[8,8]', 'moco_dim=8', 'queue_size=10'],
    'AdaIR': ['dim=8', 'num_blocks=[1,1,1,1]', 'num_refinement_blocks=1', 'heads=[1,1,1,1]',
              'ffn_expansion_factor=1.0'],
    'MoCEIR': ['dim=8', 'num_blocks=[1,1,1,1]', 'num_dec_blocks=[1,1,1]', 'num_refinement_blocks=1',
               'heads=[1,1,1,1]'],
    'BioIR': ['dim=8', 'num_blocks=[1,1,1]', 'num_refinement_blocks=1', 'ffn_expansion_factor=1.0'],
}
# Networks whose parameters do not all get a gradient at every step by design, so their files ship
# find_unused_parameters: true: MoCE-IR trains only the experts its routers choose (the official trainer uses
# strategy ddp_find_unused_parameters_true, eduardzamfir/MoCE-IR src/train.py:131).
SPARSE_NETWORKS = {'MoCEIR'}


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    root = make_official_layout(tmp_path_factory.mktemp('ddp_runs'))
    (root / 'rank_weights.py').write_text(RANK_WEIGHTS_PLUGIN)
    return root


def overrides(opt):
    """--force_yml entries: 2 iterations of a tiny network on small crops, validated once, at the end."""
    train = opt['datasets']['train']
    force = [f'network_g:{entry}' for entry in TINY_NETWORKS[opt['network_g']['type']]]
    force += ['train:total_iter=2', 'logger:print_freq=1', 'logger:save_checkpoint_freq=2', 'val:val_freq=2',
              'logger:use_tb_logger=false', 'datasets:train:num_worker_per_gpu=0',
              'datasets:train:persistent_workers=false', 'datasets:train:gt_size=32',
              "plugins=['rank_weights']", f'model_type=RankWeights{opt["model_type"]}']
    if not train.get('one_per_source'):
        force.append('datasets:train:batch_size_per_gpu=2')
    if opt['model_type'] == 'AirNetModel':
        force.append('train:encoder_iters=1')  # iteration 1 in the encoder stage, iteration 2 in the joint one
    if opt['train'].get('mini_batch_sizes'):  # Restormer's progressive patches, both phases
        force += ['train:mini_batch_sizes=[2,1]', 'train:iters=[1,1]', 'train:gt_sizes=[16,32]']
    return force


def _test_id(path):
    """The shipped file's path; for the composed ablation variant (a temporary file), the comparison's file and the
    variant: the same in every pytest-xdist worker, which must collect the same tests."""
    if path.startswith(REPO + osp.sep):
        return osp.relpath(path, REPO)
    return f'options/ablation/demo/e_prompt_source.yml:{osp.splitext(osp.basename(path))[0]}'


@pytest.mark.parametrize('path', FILES, ids=_test_id)
def test_trains_two_iterations_under_torchrun_with_identical_replicas(path, run_dir):
    opt = read_option_file(path)
    # no per-step search for unused parameters, but where a network leaves some unused by design
    assert opt.get('find_unused_parameters', False) is (opt['network_g']['type'] in SPARSE_NETWORKS)
    for rank in (0, 1):
        (run_dir / f'rank{rank}.pt').unlink(missing_ok=True)
    proc = subprocess.run(torchrun_train(path, '--force_yml', *overrides(opt)), cwd=run_dir, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    log = open(sorted(glob.glob(str(run_dir / 'experiments' / opt['name'] / 'train_*.log')))[-1]).read()
    assert 'World size (gpu number): 2' in log
    assert 'iter:       1,' in log and 'iter:       2,' in log
    rank0, rank1 = (torch.load(run_dir / f'rank{r}.pt', weights_only=True) for r in (0, 1))
    assert rank0.keys() == rank1.keys()
    for key, value in rank0.items():
        if key.endswith(('running_mean', 'running_var')):
            continue  # BatchNorm statistics are per rank under DDP (rank 0's are broadcast at each forward)
        assert torch.equal(value, rank1[key]), key  # weights (and AirNet's MoCo queue) identical on both ranks
    if opt['network_g']['type'] == 'PromptIR':
        assert 'chnl_reduce1.weight' in rank0  # the never-used official modules are still in the state dict
    if opt['network_g']['type'] == 'BioIR':
        assert 'reduce_chan_level2.weight' in rank0

"""The option schema: every key checked against what its reader declares (a class's OPTIONS or a signature),
every problem at once, before anything is built or written; and the consistency warnings."""
import copy
import json
import logging
import os
import os.path as osp
import sys

import pytest
import yaml

from promptir_basicsr.utils import option_keys
from promptir_basicsr.utils.option_keys import Key, signature_schema
from promptir_basicsr.errors import OptionError
from promptir_basicsr.options.files import apply_force_yml, read_option_file
from promptir_basicsr.options.prepare import consistency_warnings, validate_options

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = {name: osp.join(REPO, 'options', 'demo', f'{name}_demo.yml') for name in ('promptir', 'restormer', 'airnet')}


def demo(name='promptir'):
    return copy.deepcopy(read_option_file(DEMO[name]))


def problems_of(opt, is_train=True):
    """The listed problems of ``opt`` (empty when it passes)."""
    try:
        validate_options(opt, 'x.yml', is_train=is_train, check_paths=False)
    except OptionError as err:
        return str(err).split('\n')[1:]
    return []


def one(problems, text):
    """The single problem containing ``text``."""
    found = [p for p in problems if text in p]
    assert len(found) == 1, (text, problems)
    return found[0]


def test_the_demo_files_pass():
    for name in DEMO:
        assert problems_of(demo(name)) == []


def test_typos_in_three_sections_exit_2_name_all_three_and_write_nothing(in_tmp_dir, capsys):
    """The issue's report, through the `basicsr train` entry point: typos in network_g, datasets.train and
    datasets.val_1 of one file. Guards against a check that stops at the first problem, a traceback, or
    experiments/ (or the demo data) left behind."""
    from promptir_basicsr import cli
    text = open(DEMO['promptir'], encoding='utf-8').read()
    seed = '    seed: 0                      # the noise'
    for good, bad in (('  dim: 16 ', '  dimm: 16 '), ('    batch_size_per_gpu: 4 ', '    batch_size_per_gpuu: 4 '),
                      (seed, seed.replace('seed', 'seeed', 1))):
        assert text.count(good) == 1
        text = text.replace(good, bad)
    (in_tmp_dir / 'typos.yml').write_text(text)
    assert cli.main(['train', '-opt', 'typos.yml']) == 2
    out, err = capsys.readouterr()
    assert out == '' and 'Traceback' not in err
    # the quick check (options/checker.py) answers: each typo once with the key it should be, and the key left missing
    assert err.startswith('basicsr train: error: typos.yml: 4 problem(s) in the options:')
    assert "unknown key `network_g:dimm` (did you mean 'dim'?)" in err
    assert "unknown key `datasets:train:batch_size_per_gpuu` (did you mean 'batch_size_per_gpu'?)" in err
    assert 'missing required key `datasets:train:batch_size_per_gpu`' in err
    assert "unknown key `datasets:val_1:seeed` (did you mean 'seed'?)" in err
    assert sorted(os.listdir(in_tmp_dir)) == ['typos.yml']  # no experiments/, no datasets/demo


def test_network_g_against_the_architecture_signature():
    opt = demo()
    net = opt['network_g']
    net['dimm'] = net.pop('dim')
    net['ffn_expansion_factor'] = '2.66x'
    net['num_blocks'] = 4
    net['prompt_lenght'] = 5
    net['colour'] = 'rgb'
    problems = problems_of(opt)
    one(problems, "unknown key `network_g:dimm` (did you mean 'dim'?)")
    one(problems, "`network_g:prompt_lenght` (did you mean 'prompt_len'?)")
    one(problems, "`network_g:ffn_expansion_factor` must be a number, got '2.66x'")
    one(problems, '`network_g:num_blocks` must be a list, got 4')
    # no close name: the constructor's arguments are listed
    listed = one(problems, '`network_g:colour`; PromptIR reads: ')
    assert 'prompt_dims' in listed and 'keep_unused_modules' in listed and 'LayerNorm_type' in listed
    assert len(problems) == 5
    opt['network_g'] = {'type': 'Restormer', 'dim': 8, 'decoder': True}
    one(problems_of(opt), '`network_g:decoder`; Restormer reads: ')


def test_dataset_keys_against_the_dataset_declaration():
    opt = demo()
    train, val = opt['datasets']['train'], opt['datasets']['val_1']
    train['gt_siz'] = train.pop('gt_size')
    train['num_worker_per_gpu'] = '1'
    train['augment'] = 'official8'
    train['sources'][3]['pairng'] = train['sources'][3].pop('pairing')
    train['sources'][0]['repeat'] = 1.5
    val['seed'] = 'zero'
    val['persistent_workers'] = True
    problems = problems_of(opt)
    one(problems, "unknown key `datasets:train:gt_siz` (did you mean 'gt_size'?)")
    one(problems, 'missing required key `datasets:train:gt_size`')
    one(problems, "`datasets:train:num_worker_per_gpu` must be a whole number, got '1'")
    one(problems, "`datasets:train:augment` must be one of: official7, basicsr, none; got 'official8' "
                  "(did you mean 'official7'?)")
    one(problems, "unknown key `datasets:train:sources[3]:pairng` (did you mean 'pairing'?)")
    one(problems, '`datasets:train:sources[0]:repeat` must be a whole number or ~ (null), got 1.5')
    one(problems, "`datasets:val_1:seed` must be a whole number, got 'zero'")
    one(problems, '`datasets:val_1:persistent_workers: true` needs loader workers')
    assert len(problems) == 8


def test_basicsr_datasets_and_loader_requirements():
    opt = demo()
    opt['datasets']['train'] = {'name': 't', 'type': 'PairedImageDataset', 'dataroot_gt': 'gt', 'dataroot_lq': 'lq',
                                'io_backend': {'type': 'disk'}, 'gt_size': 32}
    problems = problems_of(opt)
    for key in ('use_hflip', 'use_rot', 'batch_size_per_gpu', 'num_worker_per_gpu'):
        one(problems, f'missing required key `datasets:train:{key}`')
    assert len(problems) == 4


def test_optimizer_scheduler_loss_and_metric_arguments():
    opt = demo()
    opt['train']['optim_g']['weight_decy'] = opt['train']['optim_g'].pop('weight_decay')
    opt['train']['optim_g']['lr'] = '2e-4'  # what YAML makes of `lr: 2e-4`
    opt['train']['scheduler']['max_iter'] = opt['train']['scheduler'].pop('max_iters')
    opt['train']['pixel_opt']['loss_weigth'] = 1.0
    opt['val']['metrics']['psnr'] = {'type': 'calculate_psnr', 'better': 'more'}
    problems = problems_of(opt)
    one(problems, "unknown key `train:optim_g:weight_decy` (did you mean 'weight_decay'?)")
    one(problems, "`train:optim_g:lr` must be a number, got '2e-4' (YAML reads 2e-4 as text: write 2.0e-4 or "
                  '!!float 2e-4)')
    one(problems, "unknown key `train:scheduler:max_iter` (did you mean 'max_iters'?)")
    one(problems, 'missing required key `train:scheduler:max_iters`')  # LinearWarmupCosineLR's argument
    one(problems, "unknown key `train:pixel_opt:loss_weigth` (did you mean 'loss_weight'?)")
    one(problems, 'missing required key `val:metrics:psnr:crop_border`')  # basicsr's calculate_psnr
    one(problems, "`val:metrics:psnr:better` must be one of: higher, lower; got 'more'")
    assert len(problems) == 7
    opt = demo()
    opt['train']['optim_g']['type'] = 'AdamX'
    opt['train']['scheduler']['type'] = 'LinearWarmupCosine'
    problems = problems_of(opt)
    one(problems, "train:optim_g:type: unknown optimizer 'AdamX' (did you mean 'Adam'?)")
    one(problems, "train:scheduler:type: unknown scheduler 'LinearWarmupCosine' (did you mean 'LinearWarmupCosineLR'?)")


def test_degradation_ops_and_their_parameters():
    opt = demo()
    sources = opt['datasets']['train']['sources']
    sources[0]['degradation'] = [{'type': 'gaussian_noise_uint8', 'sigmaa': 15}]
    sources[1]['degradation'] = [{'type': 'gausian_noise', 'sigma': 25}]
    problems = problems_of(opt)
    one(problems, "degradation 'gaussian_noise_uint8' has no parameter 'sigmaa'; it takes: sigma")
    one(problems, "datasets:train:sources[1]:degradation[0]: unknown degradation 'gausian_noise' (did you mean "
                  "'gaussian_noise'?)")


def test_keys_belong_to_the_model_that_reads_them():
    """AirNetModel's keys are unknown to AllInOneModel (declared per class, not globally); the model's own
    cross-key rules run too."""
    opt = demo()
    opt['train']['encoder_iters'] = 10
    one(problems_of(opt), 'unknown key `train:encoder_iters`')
    airnet = demo('airnet')
    assert problems_of(airnet) == []
    airnet['datasets']['train']['num_crops'] = 1
    assert problems_of(airnet) == ['  - datasets:train:num_crops must be 2 for AirNetModel: its contrastive loss '
                                   'compares two crops of each degraded image (MoCo query and key)']
    restormer = demo('restormer')
    restormer['train']['iters'] = [250]
    one(problems_of(restormer), 'train: mini_batch_sizes, iters and gt_sizes need the same length')
    restormer = demo('restormer')
    restormer['train']['gt_sizes'] = [48, 96]
    one(problems_of(restormer), 'train:gt_sizes [48, 96] go beyond datasets:train:gt_size 64')


def test_test_runs_need_no_train_sections():
    test_opt = read_option_file(osp.join(REPO, 'options', 'demo', 'promptir_demo_test.yml'))
    assert problems_of(test_opt, is_train=False) == []
    assert 'missing required key `train`' in ' '.join(problems_of(test_opt, is_train=True))


def test_register_known_keys_declares_keys_without_a_class(monkeypatch):
    monkeypatch.setattr(option_keys, '_REGISTERED', {})
    opt = demo()
    opt['train']['my_plugin_key'] = 3
    one(problems_of(opt), 'unknown key `train:my_plugin_key`')
    option_keys.register_known_keys('train', 'my_plugin_key')
    assert problems_of(opt) == []


def test_signature_schema_types_from_defaults():
    def op(img, rng, sigma=25, scale=0.5, name='x', flag=False, sizes=(1, 2), anything=None, *, needed, **rest):
        return img

    schema, is_open = signature_schema(op, skip=('img', 'rng'))
    assert is_open and list(schema) == ['sigma', 'scale', 'name', 'flag', 'sizes', 'anything', 'needed']
    assert schema['needed'].required and not schema['sigma'].required
    assert schema['sigma'].problems(0.01, 'sigma') == []  # an int default still takes any number
    assert schema['flag'].problems(1, 'flag') == ['`flag` must be true or false, got 1']
    assert schema['sizes'].problems('12', 'sizes') == ["`sizes` must be a list, got '12'"]
    assert schema['anything'].problems({'a': 1}, 'anything') == []
    assert Key(int, None).problems(None, 'k') == [] and Key(int).problems(True, 'k') != []


def test_force_yml_value_that_basicsr_cannot_read_is_an_option_error():
    opt = demo()
    with pytest.raises(OptionError, match=r"--force_yml 'plugins=\[my_plugin\]': cannot read the value .*quote"):
        apply_force_yml(opt, ['plugins=[my_plugin]'])
    apply_force_yml(opt, ["plugins=['my_plugin']"])
    assert opt['plugins'] == ['my_plugin']


# ---- consistency warnings -----------------------------------------------------------------------------------
def warnings_of(opt, **force):
    apply_force_yml(opt, [f'{key}={value}' for key, value in force.items()])
    assert problems_of(opt) == []
    return consistency_warnings(opt)


def test_shipped_demo_files_have_no_warnings(monkeypatch):
    """The thresholds stay quiet on the files we ship (noisy warnings get ignored)."""
    monkeypatch.setattr('promptir_basicsr.options.prepare._cpu_cores', lambda: 2)
    for name in DEMO:
        assert consistency_warnings(demo(name)) == []


def test_scheduler_horizon_against_total_iter(monkeypatch):
    monkeypatch.setattr('promptir_basicsr.options.prepare._cpu_cores', lambda: 2)

    def demo(name='promptir'):  # validation and checkpoints within every total_iter tried here
        opt = read_option_file(DEMO[name])
        opt['val']['val_freq'] = opt['logger']['save_checkpoint_freq'] = 10
        return opt

    # a shortened run whose cosine was not scaled (the report)
    assert warnings_of(demo(), **{'train:total_iter': 200}) == [
        'train:total_iter 200 stops at 40% of train:scheduler:max_iters 500: the lr is still high when the run ends; '
        'scale the schedule with total_iter']
    assert warnings_of(demo(), **{'train:total_iter': 20}) == [
        'train:scheduler:warmup_iters 30 >= train:total_iter 20: the run ends during the linear warm-up, before the lr '
        'reaches train:optim_g:lr; scale the schedule with total_iter']
    assert warnings_of(demo(), **{'train:total_iter': 800}) == [
        'train:scheduler:max_iters end at iteration 500, before train:total_iter 800: the last 300 iterations run at '
        'the final lr']
    assert warnings_of(demo(), **{'train:total_iter': 400}) == []  # 80%, as the official recipe stops
    # Restormer's cyclic cosine: the sum of its periods
    assert warnings_of(demo('restormer'), **{'train:total_iter': 300}) == [
        'train:total_iter 300 stops at 60% of train:scheduler:periods (sum 500) 500: the lr is still high when the '
        'run ends; scale the schedule with total_iter']
    opt = demo()
    opt['train']['scheduler'] = {'type': 'MultiStepLR', 'milestones': [100, 600, 900], 'gamma': 0.5}
    assert warnings_of(opt) == ['train:scheduler:milestones [600, 900] are beyond train:total_iter 500: never reached']


def test_frequencies_beyond_total_iter_and_airnet_stages(monkeypatch):
    monkeypatch.setattr('promptir_basicsr.options.prepare._cpu_cores', lambda: 2)
    found = warnings_of(demo(), **{'val:val_freq': 600, 'logger:save_checkpoint_freq': 501})
    assert found == ['val:val_freq 600 is beyond train:total_iter 500: no validation runs during training, only '
                     'the final one',
                     'logger:save_checkpoint_freq 501 is beyond train:total_iter 500: no checkpoint or training state '
                     'is saved before the end, so a crash cannot be resumed']
    airnet = warnings_of(demo('airnet'), **{'train:encoder_iters': 2400})
    assert airnet == ['train:encoder_iters 2400 >= train:total_iter 2400: only the contrastive encoder stage runs; '
                      'the restorer is never trained']


def test_loader_workers_against_cpu_cores_and_ignored_val_keys(monkeypatch):
    monkeypatch.setattr('promptir_basicsr.options.prepare._cpu_cores', lambda: 4)
    monkeypatch.delenv('LOCAL_WORLD_SIZE', raising=False)
    assert warnings_of(demo(), **{'datasets:train:num_worker_per_gpu': 4}) == []
    assert warnings_of(demo(), **{'datasets:train:num_worker_per_gpu': 5}) == [
        'datasets:train:num_worker_per_gpu 5 x 1 GPU(s) = 5 data loader processes on 4 CPU cores: they compete with '
        'training for the cores; at most 4 per GPU fits this machine']
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '2')  # torchrun: two processes on this machine
    assert warnings_of(demo(), **{'datasets:train:num_worker_per_gpu': 3}) == [
        'datasets:train:num_worker_per_gpu 3 x 2 processes = 6 data loader processes on 4 CPU cores: they compete '
        'with training for the cores; at most 2 per GPU fits this machine']
    monkeypatch.delenv('LOCAL_WORLD_SIZE')
    assert warnings_of(demo(), **{'datasets:val_2:num_worker_per_gpu': 2, 'datasets:val_2:batch_size_per_gpu': 1}) == [
        'datasets:val_2: num_worker_per_gpu ignored: basicsr loads val/test sets one image at a time in the main '
        'process']


class _RecordingLogger:
    def __init__(self):
        self.records = []

    def info(self, message):
        self.records.append(('info', message))

    def warning(self, message):
        self.records.append(('warning', message))


def test_batch_larger_than_the_training_set(tmp_path):
    """Warned when the loader is built (dataset_enlarge_ratio makes it run); an error when no full batch exists."""
    import basicsr.train

    from cli_helpers import paired_set, write_pairs
    from promptir_basicsr.errors import UserError
    write_pairs(tmp_path / 'train', 3, 16, seed=0)
    train = dict(paired_set('t', tmp_path / 'train', 'train'), phase='train', scale=1, batch_size_per_gpu=4,
                 gt_size=8, dataset_enlarge_ratio=4)
    opt = {'datasets': {'train': train}, 'world_size': 1, 'rank': 0, 'num_gpu': 0, 'dist': False,
           'manual_seed': 0, 'train': {'total_iter': 6}}
    logger = _RecordingLogger()
    basicsr.train.create_train_val_dataloader(opt, logger)
    assert ('warning', 'datasets:train: a batch of 4 samples (batch_size_per_gpu 4 x 1 process(es)) is larger than '
            'the training set (3 samples): every batch repeats samples.') in logger.records
    train['dataset_enlarge_ratio'] = 1
    with pytest.raises(UserError, match='3 samples per process are fewer than batch_size_per_gpu'):
        basicsr.train.create_train_val_dataloader(opt, _RecordingLogger())


# ---- the log: notes, the options echo, basicsr's misleading warning ------------------------------------------
def test_options_echo_is_yaml_that_reads_back(caplog):
    from promptir_basicsr.basicsr_patches.behaviour.utils_options import options_echo
    from promptir_basicsr.options.files import add_note
    opt = read_option_file(DEMO['promptir'])  # OrderedDicts, as basicsr reads it
    add_note('a consistency warning', 'warning')
    # basicsr's logger may not propagate to the root logger (it stops once basicsr's get_root_logger has set it
    # up): listen on it directly, whichever test ran first in this process
    logger = logging.getLogger('basicsr')
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger='basicsr'):
            text = options_echo(opt)
    finally:
        logger.removeHandler(caplog.handler)
    assert ('basicsr', logging.WARNING, 'a consistency warning') in caplog.record_tuples
    assert text.startswith('Options:\n') and 'OrderedDict' not in text
    assert yaml.safe_load(text[len('Options:\n'):]) == json.loads(json.dumps(opt))  # the same options
    # one line per source, as in the option file; short lists inline
    assert '    - {name: noise15, dataroot_gt: datasets/demo/train/clean, degradation: [{type: gaussian_noise_uint8, ' \
           'sigma: 15}]}\n' in text
    assert '  num_blocks: [1, 1, 1, 2]\n' in text and '  pretrain_network_g: ~\n' in text
    assert options_echo(opt).count('consistency warning') == 0  # notes are logged once


def test_misleading_multiple_validation_warning_is_dropped(caplog):
    logger = logging.getLogger('basicsr')
    with caplog.at_level(logging.INFO, logger='basicsr'):
        logger.warning('Multiple validation datasets are *only* supported by SRModel.')
        logger.warning('another warning')
    assert [r.getMessage() for r in caplog.records] == ['another warning']


def test_validation_progress_bar_follows_the_terminal(monkeypatch):
    from promptir_basicsr.models.all_in_one_model import _wants_pbar

    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.setattr(sys, 'stdout', Stream(True))
    monkeypatch.setattr(sys, 'stderr', Stream(True))
    assert _wants_pbar({}) and not _wants_pbar({'pbar': False})
    monkeypatch.setattr(sys, 'stdout', Stream(False))
    assert not _wants_pbar({}) and _wants_pbar({'pbar': True})


# ---- one-line errors of every subcommand ----------------------------------------------------------------------
@pytest.mark.parametrize('argv, message', [
    (['table', 'results/missing'], 'basicsr table: error: no results_table.json at results/missing'),
    (['convert', 'missing.ckpt', 'out.pth'], 'basicsr convert: error: Checkpoint not found: missing.ckpt'),
    (['train', '-opt', 'missing.yml'], 'basicsr train: error: Option file not found: missing.yml'),
    (['test', '-opt', 'missing.yml'], 'basicsr test: error: Option file not found: missing.yml'),
])
def test_user_mistakes_are_one_line_and_exit_2(argv, message, in_tmp_dir, capsys):
    from promptir_basicsr import cli
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count('\n') == 1, err
    assert not os.listdir(in_tmp_dir)


def test_table_of_a_file_that_is_not_a_results_table(in_tmp_dir, capsys):
    from promptir_basicsr import cli
    (in_tmp_dir / 'results_table.json').write_text('{"rows": ')
    assert cli.main(['table', 'results_table.json']) == 2
    assert 'is not a results table (invalid JSON' in capsys.readouterr().err

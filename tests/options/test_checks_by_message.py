"""The option checks message by message: options/checker.py (what the file alone tells), options/schema.py (the
declarations), options/prepare.py (warnings, the run's preparation) and options/files.py (values of --force_yml,
plugins, the YAML echo). One valid option dict, changed one mistake at a time; each case lists every problem
expected, in order, so a lost, reworded-into-None or extra problem fails."""
import copy
import os

import pytest
import yaml

from promptir_basicsr.errors import OptionError
from promptir_basicsr.options import prepare
from promptir_basicsr.options.checker import Checker, check_file, path_problems, static_problems
from promptir_basicsr.options.files import (apply_force_yml, force_yml_value, import_plugins, options_yaml,
                                            read_option_file, take_notes)
from promptir_basicsr.options.schema import collect_problems, registry_lookup
from promptir_basicsr.utils.option_keys import Key


BASE_PAIRED = {'type': 'PairedImageDataset', 'dataroot_gt': '.', 'dataroot_lq': '.', 'io_backend': {'type': 'disk'}}


@pytest.fixture
def base(tmp_path):
    """A valid training option dict (PairedImageDataset, Restormer, Adam) whose data folder exists."""
    data = tmp_path / 'data'
    data.mkdir()
    folder = str(data)
    paired = {'type': 'PairedImageDataset', 'dataroot_gt': folder, 'dataroot_lq': folder, 'io_backend': {'type': 'disk'}}
    return {'name': 'x', 'model_type': 'AllInOneModel', 'num_gpu': 0, 'manual_seed': 1,
            'datasets': {'train': dict(paired, name='t', gt_size=16, use_hflip=True, use_rot=False,
                                       batch_size_per_gpu=2, num_worker_per_gpu=0),
                         'val_1': dict(paired, name='v')},
            'network_g': {'type': 'Restormer', 'dim': 8},
            'path': {'pretrain_network_g': None, 'strict_load_g': True},
            'train': {'total_iter': 10, 'optim_g': {'type': 'Adam', 'lr': 1e-3}},
            'val': {'val_freq': 5, 'metrics': {'psnr': {'type': 'calculate_psnr_protocol'}}},
            'logger': {'print_freq': 1, 'save_checkpoint_freq': 5}}


def changed(opt, **changes):
    """A copy of ``opt`` with ``section__key=value`` set (``KeyError``: removed)."""
    opt = copy.deepcopy(opt)
    for dotted, value in changes.items():
        *parents, last = dotted.split('__')
        node = opt
        for key in parents:
            node = node[key]
        if value is KeyError:
            del node[last]
        else:
            node[last] = value
    return opt


def test_the_base_options_are_valid(base):
    assert static_problems(base) == [] and collect_problems(base) == []
    assert static_problems(changed(base, train=KeyError, logger=KeyError), is_train=False) == []


@pytest.mark.parametrize('changes, is_train, expected', [
    (dict(name=KeyError, nmae='x'), True, ["unknown key `nmae` (did you mean 'name'?)", 'missing required key `name`']),
    (dict(foo=1), True, []),  # no close basicsr key: the full check decides (a model may declare it)
    (dict(train=KeyError, logger=KeyError), True, ['missing required key `train`', 'missing required key `logger`']),
    (dict(train=KeyError, logger=KeyError), False, []),
    (dict(path__pretrain_netwrok_g='a', path__foo=1), True,
     ["unknown key `path:pretrain_netwrok_g` (did you mean 'pretrain_network_g'?)", 'unknown key `path:foo`']),
    (dict(plugins=['math'], path__pretrain_netwrok_g='a'), True, []),  # a plugin may register keys anywhere
    (dict(manual_seed='one', scale=1.5, train__total_iter='1e3', logger__print_freq=None), True,
     ["`manual_seed` must be a whole number or ~ (null), got 'one'", '`scale` must be a whole number, got 1.5',
      '`logger:print_freq` must be a number, got None',
      "`train:total_iter` must be a number, got '1e3' (YAML reads 1e3 as text: write 1.0e3 or !!float 1e3)"]),
    (dict(val__val_freq=KeyError), True, ['missing required key `val:val_freq`']),
    (dict(val__val_freq=KeyError, train__total_iter='x'), False, []),  # a test run reads neither
    (dict(logger__prnt_freq=1), True, ["unknown key `logger:prnt_freq` (did you mean 'print_freq'?)"]),
    (dict(logger__print_freq=1.5, logger__save_checkpoint_freq=KeyError), True,
     ['missing required key `logger:save_checkpoint_freq`']),
    (dict(val__metrics=[1]), True, ['`val:metrics` must be a mapping or ~ (null), got [1]']),
    # a near-miss of a key missing in a training run only; of a key that is there (the full check decides)
    (dict(logger=KeyError, loger={'print_freq': 1}), True,
     ["unknown key `loger` (did you mean 'logger'?)", 'missing required key `logger`']),
    (dict(logger=KeyError, loger={'print_freq': 1}), False, []),
    (dict(datasetss=1), True, []),
    # a section that is not there, or not read, does not end the walk of those after it
    (dict(path=KeyError, logger__prnt_freq=1), True,
     ['missing required key `path`', "unknown key `logger:prnt_freq` (did you mean 'print_freq'?)"]),
    (dict(dist_params={'backend': 1}), False, ['`dist_params:backend` must be a string, got 1']),
    (dict(network_g=5), True, ['`network_g` must be a mapping, got 5']),
    (dict(network_g={'type': 'SwinIR', 'zzz': 1}), True, []),  # not ours: the full check reads its signature
    # the model's own keys: a near-miss in train, not in a test run, not with plugins (they may declare keys)
    (dict(train__grad_chekpoint=True), True, ["unknown key `train:grad_chekpoint` (did you mean 'grad_checkpoint'?)"]),
    (dict(train__grad_chekpoint=True), False, []),
    (dict(plugins=['math'], train__grad_chekpoint=True), True, []),
])
def test_static_problems_from_the_file_alone(base, changes, is_train, expected):
    assert static_problems(changed(base, **changes), is_train=is_train) == expected


def test_unknown_architecture_option_lists_the_options(base):
    """An unknown key of our architecture with no close name: both checks list what the architecture reads (its
    constructor's arguments, sorted)."""
    import inspect
    from basicsr.utils.registry import ARCH_REGISTRY
    names = ', '.join(sorted(inspect.signature(ARCH_REGISTRY.get('Restormer')).parameters))
    expected = [f'unknown key `network_g:zzz`; Restormer reads: {names}']
    opt = changed(base, network_g__zzz=1)
    assert static_problems(opt) == expected and collect_problems(opt) == expected


def test_path_problems(base, tmp_path):
    """Every data root, meta/list file (nested sources too) and checkpoint that does not exist; none under a
    folder about to be generated; none without check_paths."""
    sources = [{'name': 'a', 'dataroot_gt': '/nope/a', 'list_file': '/nope/list.txt'},
               {'name': 'b', 'nested': {'meta_info_file': str(tmp_path / 'gen' / 'meta.txt')}}]
    opt = changed(base, datasets__train__dataroot_gt='/nope/gt', datasets__val_1__sources=sources,
                  path__pretrain_network_g='/nope/w.pth', path__resume_state='~/nope.state',
                  path__pretrain_network_d='')
    expected = ['datasets:train:dataroot_gt: /nope/gt does not exist',
                'datasets:val_1:sources[0]:dataroot_gt: /nope/a does not exist',
                'datasets:val_1:sources[0]:list_file: /nope/list.txt does not exist',
                f'datasets:val_1:sources[1]:nested:meta_info_file: {tmp_path}/gen/meta.txt does not exist',
                'path:pretrain_network_g: /nope/w.pth does not exist',
                'path:resume_state: ~/nope.state does not exist']
    assert path_problems(opt) == expected
    assert path_problems(opt, unbuilt_root=str(tmp_path / 'gen')) == expected[:3] + expected[4:]
    assert static_problems(opt) == expected and static_problems(opt, check_paths=False) == []
    assert path_problems({'datasets': [1], 'path': 'x'}) == []


def test_path_problems_of_paths_that_exist(base, tmp_path, monkeypatch):
    """Checkpoints and data that exist, written with ~ too, are no problem; a path under a folder about to be
    generated is skipped without skipping the paths after it."""
    monkeypatch.setenv('HOME', str(tmp_path))
    (tmp_path / 'w.pth').write_bytes(b'x')
    (tmp_path / 'data' / 'list.txt').write_text('a\n')
    sources = [{'name': 'a', 'dataroot_gt': str(tmp_path / 'gen' / 'a'), 'dataroot_lq': '/nope/lq'},
               {'name': 'b', 'dataroot_gt': '~/data', 'list_file': '~/data/list.txt'}]
    opt = changed(base, datasets__val_1__sources=sources, path__pretrain_network_g=str(tmp_path / 'w.pth'),
                  path__resume_state='~/w.pth')
    assert path_problems(opt, unbuilt_root=str(tmp_path / 'gen')) == [
        'datasets:val_1:sources[0]:dataroot_lq: /nope/lq does not exist']


def test_check_file_applies_force_yml_and_lists_every_problem(base, tmp_path):
    path = tmp_path / 'train.yml'
    path.write_text(yaml.safe_dump(base))
    assert check_file(str(path), force_yml=['train:total_iter=20'])['train']['total_iter'] == 20
    with pytest.raises(OptionError) as err:
        check_file(str(path), force_yml=['manual_seed=one', 'scale=1.5'])
    assert str(err.value) == (f"{path}: 2 problem(s) in the options:\n  - `manual_seed` must be a whole number or ~ "
                              "(null), got 'one'\n  - `scale` must be a whole number, got 1.5")
    demo = changed(base, demo_data=True, datasets__train__dataroot_gt='/nope')
    path.write_text(yaml.safe_dump(demo))
    assert check_file(str(path))['demo_data'] is True  # paths wait for the demo data to be written
    path.write_text(yaml.safe_dump(changed(base, path__pretrain_network_g='/nope/w.pth')))
    with pytest.raises(OptionError, match='path:pretrain_network_g: /nope/w.pth does not exist'):
        check_file(str(path))
    path.write_text(yaml.safe_dump(changed(base, logger=KeyError)))
    assert check_file(str(path), is_train=False)['name'] == 'x'
    with pytest.raises(OptionError, match='missing required key `logger`'):
        check_file(str(path))


def test_checker_runs_a_nested_check_only_on_a_well_typed_value():
    """A key's own check sees only values of its types, never ~ (null) nor a value already reported."""
    seen = []
    schema = {'net': Key(dict, None, check=lambda checker, value, where: seen.append((value, where)))}
    checker = Checker({}, is_train=True)
    for value in ({'a': 1}, None, 5):
        checker.mapping({'net': value}, schema, 'top')
    assert seen == [({'a': 1}, 'top:net')]
    assert checker.problems == ['`top:net` must be a mapping or ~ (null), got 5']


def test_checker_walks_lists_of_mappings(base):
    """Each entry of a list of mappings is checked against the entry schema, under its owner's name; a wrong
    entry kind is named; unknown keys without a close name are listed once with what the owner reads."""
    schema = {'sources': Key(list, items={'name': Key(str, required=True), 'weight': Key(float)})}
    checker = Checker({}, is_train=True)
    checker.mapping({'sources': [{'name': 'a', 'wieght': 1.0, 'extra': 1, 'more': 2}, 'b', {'weight': 'x'}]},
                    schema, 'datasets:train')
    assert checker.problems == [
        "unknown key `datasets:train:sources[0]:wieght` (did you mean 'weight'?)",
        "unknown keys `datasets:train:sources[0]:extra`, `datasets:train:sources[0]:more`; each entry of `sources` "
        "reads: name, weight",
        "`datasets:train:sources[1]` must be a mapping of keys, got 'b'",
        "`datasets:train:sources[2]:weight` must be a number, got 'x'",
        'missing required key `datasets:train:sources[2]:name`']
    entries = Checker({}, is_train=True)  # a val set's entries: train=False holds for them too
    entries.mapping({'sources': [{}]}, {'sources': Key(list, items={'w': Key(required='train')})}, 'd', train=False)
    assert entries.problems == []
    train_only = {'gt_size': Key(int, required='train')}
    tested = Checker({}, is_train=True)
    tested.mapping({}, train_only, 'd', train=False)
    tested.mapping({'x': 1}, {}, 'open', is_open=True)  # an open schema (**kwargs) takes any key
    assert tested.problems == []
    tested.mapping({}, train_only, 'd')
    assert tested.problems == ['missing required key `d:gt_size`']


@pytest.mark.parametrize('changes, is_train, expected', [
    (dict(datasets__test_1={'name': 'v', 'type': 'SingleImageDataset', 'dataroot_lq': '.', 'io_backend': {}}), True,
     ["datasets:test_1: a training run's phases are `train` and `val*`"]),
    (dict(datasets__test_1={'name': 'v', 'type': 'SingleImageDataset', 'dataroot_lq': '.', 'io_backend': {}}), False,
     []),
    (dict(datasets__val_1=5), True, ['datasets:val_1: expected a mapping of dataset options']),
    (dict(datasets={}), True, ['`datasets` must map phases (train, val_1, test_1, ...) to dataset options']),
    (dict(datasets__train__gt_size=KeyError), True, ['missing required key `datasets:train:gt_size`']),
    (dict(datasets__train__use_flip=True), True, ["unknown key `datasets:train:use_flip` (did you mean 'use_hflip'?)"]),
    (dict(datasets__train__persistent_workers=True), True,
     ['`datasets:train:persistent_workers: true` needs loader workers, but this set is loaded in the main process '
      '(`num_worker_per_gpu: 0`; basicsr always does so for val/test sets): remove it']),
    (dict(datasets__train__persistent_workers=True, datasets__train__num_worker_per_gpu=2), True, []),
    (dict(datasets__val_1__persistent_workers=True, datasets__val_1__num_worker_per_gpu=2), True,
     ['`datasets:val_1:persistent_workers: true` needs loader workers, but this set is loaded in the main process '
      '(`num_worker_per_gpu: 0`; basicsr always does so for val/test sets): remove it']),
    (dict(datasets__train__mini_batch_sizes=[2], datasets__train__iters=[5], datasets__train__gt_sizes=[16]), True,
     []),  # the model's keys in datasets:train (where Restormer's files keep them)
    (dict(datasets__val_1__mini_batch_sizes=[2]), True, [
        'unknown key `datasets:val_1:mini_batch_sizes`; PairedImageDataset reads: batch_size_per_gpu, color, '
        'dataroot_gt, dataroot_lq, dataset_enlarge_ratio, filename_tmpl, gt_size, io_backend, mean, meta_info_file, '
        'name, num_prefetch_queue, num_worker_per_gpu, persistent_workers, phase, pin_memory, prefetch_mode, scale, '
        'std, use_hflip, use_rot, use_shuffle']),
    (dict(network_g__dimm=8), True, ["unknown key `network_g:dimm` (did you mean 'dim'?)"]),
    (dict(network_g={'dim': 8}), True, ['network_g:type: missing `type` (architecture)']),
    (dict(network_g={'type': 'PromptIR', 'prompt_levels': [4, 1]}), True,
     ["network_g: prompt_levels must list distinct decoder levels among 4 (the latent), 3 and 2 (the paper's "
      "numbering; [4, 3, 2] is PromptIR, [4] the latent only), got [4, 1]"]),
    (dict(network_g={'type': 'PromptIR', 'prompt_levels': [4, 1], 'dimm': 3}), True,
     ["unknown key `network_g:dimm` (did you mean 'dim'?)"]),  # the value rules wait for well-formed keys
    (dict(num_gpu=-1), True, ['`num_gpu` must be `auto` or a whole number >= 0, got -1']),
    (dict(num_gpu=True), True, ['`num_gpu` must be `auto` or a whole number >= 0, got True']),
    (dict(num_gpu='two'), True, ["`num_gpu` must be `auto` or a whole number >= 0, got 'two'"]),
    (dict(num_gpu='auto'), True, []),
    (dict(train__optim_g={'type': 'Adam', 'lrr': 1}), True, ["unknown key `train:optim_g:lrr` (did you mean 'lr'?)"]),
    (dict(train__scheduler={'type': 'StepLR', 'step': 3}), True,
     ["unknown key `train:scheduler:step` (did you mean 'step_size'?)", 'missing required key `train:scheduler:step_size`']),
    (dict(train__scheduler={'type': 'StepLRR'}), False, []),  # a test run ignores train
    (dict(train__pixel_opt={'type': 'L1Loss', 'weight': 1}), True,
     ["unknown key `train:pixel_opt:weight` (did you mean 'loss_weight'?)"]),
    (dict(train__pixel_opt={'loss_weight': 1}), True, ['train:pixel_opt:type: missing `type` (loss)']),
    (dict(train__pixel_opt={'type': 'L1Loss', 'loss_weight': 'x'}), False, []),
    (dict(val__metrics={'psnr': 3}), True, ['`val:metrics:psnr` must be a mapping like {type: calculate_psnr, '
                                            'crop_border: 0}']),
    (dict(val__metrics={'psnr': 3, 'ssim': {'type': 'calculate_ssim_protocol', 'better': 'up'}}), True,
     ['`val:metrics:psnr` must be a mapping like {type: calculate_psnr, crop_border: 0}',
      "`val:metrics:ssim:better` must be one of: higher, lower; got 'up'"]),
    (dict(val__metrics={'psnr': {'type': 'calculate_psnr', 'better': 3}}), True,
     ['`val:metrics:psnr:better` must be a string, got 3', 'missing required key `val:metrics:psnr:crop_border`']),
    (dict(val__metrics={'psnr': {'type': 'calculate_psnr_protocol', 'better': 'higher'}}), True, []),
    (dict(train__mini_batch_sizes=[2, 1], train__iters=[5], train__gt_sizes=[8, 16]), True,
     ['train: mini_batch_sizes, iters and gt_sizes need the same length (one value per phase), got [2, 1], [5], '
      '[8, 16]']),
    (dict(train__mini_batch_sizes=5, train__iters=[5], train__gt_sizes=[8, 16]), True,
     ['`train:mini_batch_sizes` must be a list or ~ (null), got 5']),  # the model's rules crash quietly
    (dict(foo=1), True, ['unknown key `foo`']),
    # a section's own check runs only on a value of its type; ~ where allowed is no problem
    (dict(network_g=5), True, ['`network_g` must be a mapping, got 5']),
    (dict(val__metrics=None), True, []),
    (dict(network_g=KeyError), True, ['missing required key `network_g`']),
    # an unknown key with no close name: what the class named by `type` reads
    (dict(train__pixel_opt={'type': 'L1Loss', 'zzz': 1}), True,
     ['unknown key `train:pixel_opt:zzz`; L1Loss reads: loss_weight, reduction']),
    (dict(train__scheduler={'type': 'StepLR', 'step_size': 3, 'zzz': 1}), True,
     ['unknown key `train:scheduler:zzz`; StepLR reads: gamma, step_size']),
    (dict(val__metrics={'psnr': {'type': 'calculate_psnr_protocol', 'zzz': 1}}), True, []),  # takes **kwargs
    (dict(datasets__train__num_worker_per_gpu=KeyError, datasets__train__persistent_workers=True), True,
     ['missing required key `datasets:train:num_worker_per_gpu`',
      '`datasets:train:persistent_workers: true` needs loader workers, but this set is loaded in the main process '
      '(`num_worker_per_gpu: 0`; basicsr always does so for val/test sets): remove it']),
    (dict(datasets__train__batch_size_per_gpu=KeyError), True,
     ['missing required key `datasets:train:batch_size_per_gpu`']),
    # basicsr's train loop builds the set named `train` and those named val*; it refuses any other phase
    (dict(datasets__train_2=dict(BASE_PAIRED, name='t2', gt_size=16, use_hflip=True, use_rot=False,
                                 batch_size_per_gpu=2, num_worker_per_gpu=0)), True,
     ["datasets:train_2: a training run's phases are `train` and `val*`"]),
    (dict(dist_params={'backend': 1}), False, ['`dist_params:backend` must be a string, got 1']),
    (dict(model_type='SRModel'), True, []),  # basicsr's model: no keys of its own declared
])
def test_collect_problems_one_mistake_at_a_time(base, changes, is_train, expected):
    opt = changed(base, **changes)
    if not is_train:
        opt.pop('logger')
    assert collect_problems(opt, is_train) == expected


@pytest.mark.parametrize('changes, where, unknown, kind, known', [
    (dict(datasets__val_1__type='PairdImageDataset'), 'datasets:val_1:type', "'PairdImageDataset' (did you mean "
     "'PairedImageDataset'?)", 'dataset', ['AllInOneDataset', 'PairedImageDataset', 'SingleImageDataset']),
    (dict(network_g__type='Restormr'), 'network_g:type', "'Restormr' (did you mean 'Restormer'?)", 'architecture',
     ['AdaIR', 'PromptIR', 'Restormer']),
    (dict(train__pixel_opt={'type': 'L1Los'}), 'train:pixel_opt:type', "'L1Los' (did you mean 'L1Loss'?)", 'loss',
     ['ContrastiveLoss', 'FFTLoss', 'L1Loss']),
    (dict(val__metrics={'psnr': {'type': 'calculate_psnrr'}}), 'val:metrics:psnr:type',
     "'calculate_psnrr' (did you mean 'calculate_psnr'?)", 'metric', ['calculate_psnr_protocol']),
    (dict(model_type='AllInOneModl'), 'model_type', "'AllInOneModl' (did you mean 'AllInOneModel'?)", 'model',
     ['AirNetModel', 'ContrastiveModel']),
])
def test_unknown_registry_names_list_the_known_ones(base, changes, where, unknown, kind, known):
    """One problem: the name, the closest known one, every known name (basicsr's '_basicsr' suffix removed,
    sorted), and how a plugin adds more."""
    problems = collect_problems(changed(base, **changes))
    assert len(problems) == 1, problems
    head, listed = problems[0].split('; known: ')
    assert head == f'{where}: unknown {kind} {unknown}'
    names = listed.removesuffix('. A plugin module listed under `plugins:` can register more.').split(', ')
    assert names == sorted(names) and set(known) <= set(names) and not any(n.endswith('_basicsr') for n in names)


def test_optimizer_scheduler_and_degradation_names(base):
    """torch.optim classes by name (not the base class), our and torch's schedulers, degradation ops and their
    parameters (checked as the dataset will)."""
    (problem, ) = collect_problems(changed(base, train__optim_g={'type': 'Adamm', 'lr': 1}))
    head, names = problem.split('; a torch.optim class: ')
    assert head == "train:optim_g:type: unknown optimizer 'Adamm' (did you mean 'Adam'?)"
    assert 'AdamW' in names.split(', ') and 'Optimizer' not in names.split(', ')
    assert collect_problems(changed(base, train__optim_g={'lr': 1}))[0].startswith(
        'train:optim_g:type: unknown optimizer None; a torch.optim class: ASGD')
    assert collect_problems(changed(base, train__scheduler={'type': 'StepLRR'})) == [
        "train:scheduler:type: unknown scheduler 'StepLRR' (did you mean 'MultiStepLR'?); known: LinearWarmupCosineLR, "
        'CosineAnnealingRestartCyclicLR, AirNetStepLR, MultiStepRestartLR, MultiStepLR, CosineAnnealingRestartLR, or a '
        'class of torch.optim.lr_scheduler']
    train = {'name': 't', 'type': 'AllInOneDataset', 'gt_size': 16, 'batch_size_per_gpu': 2, 'num_worker_per_gpu': 0,
             'sources': [{'name': 'a', 'dataroot_gt': base['datasets']['val_1']['dataroot_gt'], 'degradation': None}]}
    cases = [([{'type': 'gaussian_noise', 'sigmaa': 15}],
              ["datasets:train:sources[0]:degradation[0]: degradation 'gaussian_noise' has no parameter 'sigmaa'; it "
               'takes: sigma, clip']),
             ([{'type': 'gaussian_noiz'}, 5, {'type': 'gaussian_noise', 'sigmaa': 1}],
              ["datasets:train:sources[0]:degradation[0]: unknown degradation 'gaussian_noiz' (did you mean "
               "'gaussian_noise'?); known: gaussian_blur, gaussian_noise, gaussian_noise_uint8, haze, jpeg, low_light, "
               'motion_blur, rain. A plugin module listed under `plugins:` can register more.',
               'datasets:train:sources[0]:degradation[1]: missing `type` (degradation)']),
             ([{'type': 'gaussian_noise', 'sigma': [5, 25]}], []),
             ('gaussian_noise', ["`datasets:train:sources[0]:degradation` must be a list or a mapping or ~ (null), "
                                 "got 'gaussian_noise'"])]  # the dataset's own schema says so; no op check
    for ops, expected in cases:
        train['sources'][0]['degradation'] = ops
        problems = collect_problems(changed(base, datasets__train=copy.deepcopy(train)))
        assert [p for p in problems if 'degradation' in p] == expected, ops


def test_sets_that_cannot_be_checked_do_not_end_the_walk(base):
    """A set that is not a mapping, or whose type is unknown, is reported; the sets after it are still checked."""
    datasets = {'val_0': 5, 'val_x': {'name': 'x', 'type': 'Nope'}, **changed(base['datasets'], train__gt_size=KeyError)}
    problems = collect_problems(changed(base, datasets=datasets))
    assert len(problems) == 3, problems
    assert problems[0] == 'datasets:val_0: expected a mapping of dataset options'
    assert problems[1].startswith("datasets:val_x:type: unknown dataset 'Nope'; known: ")
    assert problems[2] == 'missing required key `datasets:train:gt_size`'


def test_optimizer_options_are_listed_for_an_unknown_key(base):
    import inspect
    import torch
    names = ', '.join(sorted(set(inspect.signature(torch.optim.Adam).parameters) - {'params'}))
    assert collect_problems(changed(base, train__optim_g={'type': 'Adam', 'lr': 1, 'zzz': 1})) == [
        f'unknown key `train:optim_g:zzz`; Adam reads: {names}']
    (problem, ) = collect_problems(changed(base, train__optim_g={'type': 'Adamm', 'lr': 1}))
    listed = problem.split('; a torch.optim class: ')[1].split(', ')
    assert all(issubclass(getattr(torch.optim, name), torch.optim.Optimizer) for name in listed), listed
    assert len(listed) >= 10 and 'Optimizer' not in listed


def test_a_plugins_metric_without_kwargs_lists_its_options(base, monkeypatch):
    """A metric a plugin registers, whose function takes no **kwargs: an unknown key is named with what it reads."""
    from basicsr.utils.registry import METRIC_REGISTRY

    def plain_metric(img, img2, crop_border, scale=1.0):
        return 0.0

    monkeypatch.setitem(METRIC_REGISTRY._obj_map, 'plain_metric', plain_metric)
    assert collect_problems(changed(base, val__metrics={'m': {'type': 'plain_metric', 'crop_border': 0, 'zzz': 1}})) \
        == ['unknown key `val:metrics:m:zzz`; plain_metric reads: better, crop_border, scale']


def test_degradation_op_known_only_under_its_basicsr_name(base, monkeypatch):
    """A plugin's op registered as `<name>_basicsr` passes the registry lookup (basicsr's fallback) but not the
    dataset's pipeline, which looks the name up as written: its error is one line, without the quotes of a
    KeyError's text."""
    from promptir_basicsr.data.degradations import DEGRADATION_REGISTRY, known_degradations

    def fancy(img, rng):
        return img

    monkeypatch.setitem(DEGRADATION_REGISTRY._obj_map, 'fancy_basicsr', fancy)
    train = {'name': 't', 'type': 'AllInOneDataset', 'gt_size': 16, 'batch_size_per_gpu': 2, 'num_worker_per_gpu': 0,
             'sources': [{'name': 'a', 'dataroot_gt': base['datasets']['val_1']['dataroot_gt'],
                          'degradation': [{'type': 'fancy'}]}]}
    assert collect_problems(changed(base, datasets__train=train)) == [
        "datasets:train:sources[0]:degradation[0]: unknown degradation type 'fancy'. Known degradations: "
        f"{', '.join(known_degradations())}. A new one can be registered with @DEGRADATION_REGISTRY.register() in a "
        'module listed under `plugins:`.']


@pytest.mark.parametrize('available, count, num_gpu, expected', [
    (False, 3, 0, []),
    (False, 3, 1, ['`num_gpu: 1` but this machine has 0 CUDA device(s); use `num_gpu: auto` (the CPU here)']),
    (True, 2, 2, []),
    (True, 2, 3, ['`num_gpu: 3` but this machine has 2 CUDA device(s); use `num_gpu: auto` (2 here)']),
])
def test_num_gpu_against_the_cuda_devices(base, monkeypatch, available, count, num_gpu, expected):
    """CUDA devices count only when CUDA is available (device_count may see devices a broken driver cannot use)."""
    import torch
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: available)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: count)
    assert collect_problems(changed(base, num_gpu=num_gpu)) == expected


def test_registry_lookup_takes_basicsr_suffixed_names():
    from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY
    assert registry_lookup(ARCH_REGISTRY, 'Restormer').__name__ == 'Restormer'
    assert registry_lookup(LOSS_REGISTRY, 'L1Loss') is not None  # basicsr registers it as 'L1Loss'
    assert registry_lookup(ARCH_REGISTRY, 'Nope') is None and registry_lookup(ARCH_REGISTRY, 5) is None


# ---- options/files.py ----------------------------------------------------------------------------------------
@pytest.mark.parametrize('text, value', [
    ('~', None), ('None', None), ('none', None), ('TRUE', True), ('False', False), ('!!float 2e-4', 2e-4),
    ('12', 12), ('1.5', 1.5), ('.5', 0.5), ('5.', 5.0), ('1.2.3', '1.2.3'), ('1..2', '1..2'), ('[1, 2]', [1, 2]),
    ("['a', 'b']", ['a', 'b']), ('abc', 'abc'), ('Nonesuch', 'Nonesuch'), ('-3', '-3'),
])
def test_force_yml_values_as_basicsr_reads_them(text, value):
    assert force_yml_value(text) == value and type(force_yml_value(text)) is type(value)


def test_apply_force_yml(base):
    opt = apply_force_yml(copy.deepcopy(base), ['train:optim_g:lr=!!float 1e-3', 'val:suffix = a=b', 'name=y'])
    assert opt['train']['optim_g']['lr'] == 1e-3 and opt['val']['suffix'] == 'a=b' and opt['name'] == 'y'
    assert apply_force_yml(copy.deepcopy(base), None) == base
    for entry, message in (('name', 'expected key:subkey=value'), ('nope:x=1', "no option section 'nope'"),
                           ('name:x=1', "no option section 'name'"), ('x=[a', 'cannot read the value')):
        with pytest.raises(OptionError, match=message):
            apply_force_yml(copy.deepcopy(base), [entry])


def test_read_option_file_and_its_mistakes(tmp_path):
    path = tmp_path / 'o.yml'
    path.write_text('name: Méthode  # non-ASCII, UTF-8\nlist: [1, 2]\n', encoding='utf-8')
    assert read_option_file(str(path)) == {'name': 'Méthode', 'list': [1, 2]}
    path.write_text('- a list\n')
    with pytest.raises(OptionError, match='the top level must be a mapping of option keys, got list'):
        read_option_file(str(path))
    path.write_text('a: [1\n')
    with pytest.raises(OptionError, match='not valid YAML'):
        read_option_file(str(path))
    with pytest.raises(OptionError, match='Option file not found'):
        read_option_file(str(tmp_path / 'none.yml'))


def test_plugins_import_from_beside_the_file(tmp_path, monkeypatch):
    (tmp_path / 'my_plugin_for_test.py').write_text('VALUE = 7\n')
    monkeypatch.syspath_prepend(str(tmp_path / 'elsewhere'))
    modules = import_plugins({'plugins': 'my_plugin_for_test'}, str(tmp_path / 'x.yml'))  # one name as text
    assert [m.VALUE for m in modules] == [7]
    assert import_plugins({}, str(tmp_path / 'x.yml')) == []
    with pytest.raises(OptionError, match='`plugins` must be a list of Python module names, got 5'):
        import_plugins({'plugins': 5}, 'x.yml')
    with pytest.raises(OptionError, match=r"x.yml: plugins: cannot import module 'no_such_plugin_module' \("):
        import_plugins({'plugins': ['no_such_plugin_module']}, 'x.yml')


def test_options_yaml_style():
    """Sections as blocks in the given order, flat lists and the entries of lists of mappings on one line, ~ for
    None, non-ASCII kept, long lines unbroken (up to 200 characters)."""
    opt = {'name': 'Méthode', 'zeta': None, 'alpha': [1, 2],
           'datasets': {'train': {'sources': [{'name': 'a', 'weight': 1}], 'note': 'x' * 150}}}
    assert options_yaml(opt) == (
        "name: Méthode\nzeta: ~\nalpha: [1, 2]\ndatasets:\n  train:\n    sources:\n    - {name: a, weight: 1}\n"
        f"    note: {'x' * 150}\n")
    # a long text is folded at its first space past column 200: 'note: ' and 49 words of 3 letters end there
    words = ' '.join(['abc'] * 60)
    first, second = options_yaml({'note': words}).splitlines()
    assert first == 'note: ' + ' '.join(['abc'] * 49) and len(first) == 201 and second == '  ' + ' '.join(['abc'] * 11)


# ---- options/prepare.py --------------------------------------------------------------------------------------
def test_consistency_warnings(base, monkeypatch):
    """Each warning with its numbers: schedule horizon, validation and checkpoints beyond total_iter, loader
    processes against the cores (per process under torchrun), loader keys of val/test sets, the model's own;
    none for a test run's train section."""
    monkeypatch.setattr(prepare, '_cpu_cores', lambda: 4)
    monkeypatch.delenv('LOCAL_WORLD_SIZE', raising=False)
    opt = changed(base, train__scheduler={'type': 'CosineAnnealingLR', 'T_max': 8}, val__val_freq=20,
                  logger__save_checkpoint_freq=10.5, datasets__train__num_worker_per_gpu=5,
                  datasets__val_1__batch_size_per_gpu=4, datasets__val_1__num_worker_per_gpu=0)
    assert prepare.consistency_warnings(opt) == [
        'train:scheduler:T_max end at iteration 8, before train:total_iter 10: the last 2 iterations run at the final lr',
        'val:val_freq 20 is beyond train:total_iter 10: no validation runs during training, only the final one',
        'logger:save_checkpoint_freq 10.5 is beyond train:total_iter 10: no checkpoint or training state is saved '
        'before the end, so a crash cannot be resumed',
        'datasets:train:num_worker_per_gpu 5 x 1 GPU(s) = 5 data loader processes on 4 CPU cores: they compete with '
        'training for the cores; at most 4 per GPU fits this machine',
        'datasets:val_1: batch_size_per_gpu ignored: basicsr loads val/test sets one image at a time in the main '
        'process']
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '2')
    opt = changed(base, val__val_freq=10, logger__save_checkpoint_freq=10, datasets__train__num_worker_per_gpu=3,
                  datasets__val_1__num_worker_per_gpu=2, datasets__val_1__batch_size_per_gpu=1, num_gpu=0)
    assert prepare.consistency_warnings(opt) == [
        'datasets:train:num_worker_per_gpu 3 x 2 processes = 6 data loader processes on 4 CPU cores: they compete '
        'with training for the cores; at most 2 per GPU fits this machine',
        'datasets:val_1: num_worker_per_gpu ignored: basicsr loads val/test sets one image at a time in the main '
        'process']
    monkeypatch.delenv('LOCAL_WORLD_SIZE')
    assert prepare.consistency_warnings(changed(base, datasets__train__num_worker_per_gpu=4, num_gpu='auto')) == []
    assert prepare.consistency_warnings(changed(base, val__val_freq=20), is_train=False) == []
    assert prepare.consistency_warnings(changed(base, train__total_iter='x', val__val_freq=20)) == []
    contrastive = changed(base, model_type='ContrastiveModel', train__encoder_iters=10)
    assert prepare.consistency_warnings(contrastive) == [
        'train:encoder_iters 10 >= train:total_iter 10: only the contrastive encoder stage runs; the restorer is never '
        'trained']
    assert prepare.consistency_warnings(changed(base, datasets__notes='x')) == []


def test_consistency_warnings_loader_processes(base, monkeypatch):
    """The loader processes of each set basicsr loads with workers (phase train*): workers x the GPUs given (or
    CUDA's count for auto, when CUDA is available), x the processes under torchrun instead; no workers given is none."""
    import torch
    monkeypatch.setattr(prepare, '_cpu_cores', lambda: 4)
    monkeypatch.delenv('LOCAL_WORLD_SIZE', raising=False)
    three = changed(base, datasets__train__num_worker_per_gpu=3)
    assert prepare.consistency_warnings(changed(three, num_gpu=2)) == [
        'datasets:train:num_worker_per_gpu 3 x 2 GPU(s) = 6 data loader processes on 4 CPU cores: they compete with '
        'training for the cores; at most 2 per GPU fits this machine']
    assert prepare.consistency_warnings(changed(three, num_gpu=KeyError)) == []  # auto, no CUDA here: 3 x 1
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    assert prepare.consistency_warnings(changed(three, num_gpu='auto'))[0].startswith(
        'datasets:train:num_worker_per_gpu 3 x 2 GPU(s) = 6 data loader processes')
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)  # devices a broken driver cannot use
    assert prepare.consistency_warnings(changed(three, num_gpu='auto')) == []
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '8')
    assert prepare.consistency_warnings(changed(base, datasets__train__num_worker_per_gpu=KeyError)) == []
    # a set that is not a mapping first does not end the walk; a test run loads a train* set with its workers too
    train_b = changed(base['datasets']['train'], num_worker_per_gpu=1)
    assert prepare.consistency_warnings(changed(base, datasets={'notes': 'x', 'train_b': train_b}), is_train=False) == [
        'datasets:train_b:num_worker_per_gpu 1 x 8 processes = 8 data loader processes on 4 CPU cores: they compete '
        'with training for the cores; at most 1 per GPU fits this machine']


def test_consistency_warnings_without_frequencies_and_with_the_models_own(base, monkeypatch):
    monkeypatch.setattr(prepare, '_cpu_cores', lambda: 64)
    assert prepare.consistency_warnings(changed(base, val=KeyError, logger__save_checkpoint_freq=KeyError)) == []
    contrastive = changed(base, model_type='ContrastiveModel', train__encoder_iters=10, val__val_freq=20)
    assert prepare.consistency_warnings(contrastive) == [
        'val:val_freq 20 is beyond train:total_iter 10: no validation runs during training, only the final one',
        'train:encoder_iters 10 >= train:total_iter 10: only the contrastive encoder stage runs; the restorer is never '
        'trained']


def test_cpu_cores_counts_this_process_cores(monkeypatch):
    assert prepare._cpu_cores() == len(os.sched_getaffinity(0))
    monkeypatch.delattr(os, 'sched_getaffinity')
    monkeypatch.setattr(os, 'cpu_count', lambda: None)
    assert prepare._cpu_cores() == 1
    monkeypatch.setattr(os, 'cpu_count', lambda: 6)
    assert prepare._cpu_cores() == 6


def test_prepare_run(base, tmp_path, monkeypatch):
    """The overrides, the check (every problem in one error, nothing prepared), the warnings kept for the log."""
    monkeypatch.setattr(prepare, '_cpu_cores', lambda: 64)
    path = tmp_path / 'train.yml'
    path.write_text(yaml.safe_dump(changed(base, val__val_freq=50)))
    opt = prepare.prepare_run(str(path), force_yml=['train:total_iter=20'])
    assert opt['train']['total_iter'] == 20
    assert take_notes() == [('warning', 'val:val_freq 50 is beyond train:total_iter 20: no validation runs during '
                                        'training, only the final one')]
    with pytest.raises(OptionError) as err:
        prepare.prepare_run(str(path), force_yml=['network_g:dimm=8', 'num_gpu=-1'])
    assert str(err.value) == (f"{path}: 2 problem(s) in the options:\n  - unknown key `network_g:dimm` (did you mean "
                              "'dim'?)\n  - `num_gpu` must be `auto` or a whole number >= 0, got '-1'")
    assert take_notes() == []
    test_opt = changed(base, train__total_iter='x', datasets={'test_1': base['datasets']['val_1']})
    test_opt.pop('logger')
    path.write_text(yaml.safe_dump(test_opt))
    assert prepare.prepare_run(str(path), is_train=False)['name'] == 'x'  # a test run reads no train section
    with pytest.raises(OptionError, match="`train:total_iter` must be a number, got 'x'"):
        prepare.prepare_run(str(path))
    test_opt = changed(test_opt, train__total_iter=10, val__val_freq=50)  # a test run reads no train section
    path.write_text(yaml.safe_dump(test_opt))
    prepare.prepare_run(str(path), is_train=False)
    assert take_notes() == []
    with pytest.raises(OptionError, match='missing required key `logger`'):
        prepare.validate_options(test_opt, str(path), check_paths=False)  # a training run's by default
    path.write_text(yaml.safe_dump(changed(base, path__pretrain_network_g='/nope.pth')))
    with pytest.raises(OptionError, match='path:pretrain_network_g: /nope.pth does not exist'):
        prepare.validate_options(read_option_file(str(path)), str(path))
    assert prepare.validate_options(read_option_file(str(path)), str(path), check_paths=False)['name'] == 'x'


def test_prepare_run_writes_the_demo_data_first(base, tmp_path, monkeypatch):
    """demo_data: its paths are checked after the data is written (not before: they do not exist yet), and the
    log notes whether it was written now or already there."""
    monkeypatch.chdir(tmp_path)
    demo = {'name': 'x', 'model_type': 'AllInOneModel', 'num_gpu': 0, 'demo_data': 'demo_here',
            'datasets': {'train': changed(base['datasets']['train'], dataroot_gt='demo_here/train/clean',
                                          dataroot_lq='demo_here/train/clean')},
            'network_g': base['network_g'], 'path': {}, 'train': base['train'], 'val': {'val_freq': 5},
            'logger': base['logger']}
    (tmp_path / 'demo.yml').write_text(yaml.safe_dump(demo))
    prepare.prepare_run('demo.yml')
    notes = take_notes()
    assert notes[-1] == ('info', f'Demo data (option demo_data): {tmp_path / "demo_here"} (written now from '
                                 "scikit-image's photos; `python scripts/make_demo_data.py` rebuilds it)")
    assert (tmp_path / 'demo_here' / 'train' / 'clean').is_dir()
    prepare.prepare_run('demo.yml')
    assert take_notes()[-1][1].endswith('(already there; `python scripts/make_demo_data.py` rebuilds it)')
    demo['datasets']['train']['dataroot_lq'] = 'demo_here/no_such_folder'
    (tmp_path / 'demo.yml').write_text(yaml.safe_dump(demo))
    with pytest.raises(OptionError, match='dataroot_lq: demo_here/no_such_folder does not exist'):
        prepare.prepare_run('demo.yml')


def test_prepare_run_checks_the_demo_datas_paths_once_written(base, tmp_path, monkeypatch):
    """A path under the demo folder that its writing does not make is found by the check after the writing, under
    the option file's name; a test run's is checked as a test run (no train or logger section)."""
    monkeypatch.chdir(tmp_path)
    demo = {'name': 'x', 'model_type': 'AllInOneModel', 'num_gpu': 0, 'demo_data': 'demo_here', 'path': {},
            'datasets': {'test_1': changed(base['datasets']['val_1'], dataroot_gt='demo_here/val/clean',
                                           dataroot_lq='demo_here/val/clean')},
            'network_g': base['network_g']}
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(demo))
    assert prepare.prepare_run('test.yml', is_train=False)['name'] == 'x'
    assert take_notes()[-1][1].endswith('(written now from scikit-image\'s photos; `python scripts/make_demo_data.py` '
                                        'rebuilds it)')
    demo['demo_data'] = 'demo_there'
    demo['datasets']['test_1']['dataroot_lq'] = 'demo_there/no_such_folder'
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(demo))
    with pytest.raises(OptionError) as err:
        prepare.prepare_run('test.yml', is_train=False)
    assert str(err.value) == ('test.yml: 1 problem(s) in the options:\n  - datasets:test_1:dataroot_lq: '
                              'demo_there/no_such_folder does not exist')

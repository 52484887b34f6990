"""options/checker.py: the checks that need only the file answer before torch loads, and say what the full check says."""
import inspect
import subprocess
import sys

import pytest
import yaml

from promptir_basicsr.errors import OptionError
from promptir_basicsr.options.checker import check_file, our_architectures, our_datasets, our_models, static_problems
from promptir_basicsr.options.files import read_option_file
from promptir_basicsr.options.schema import collect_problems

DEMO = 'options/demo/promptir_demo.yml'


def _with(path, tmp_path, old, new):
    text = open(path, encoding='utf-8').read()
    assert old in text
    (tmp_path / 'x.yml').write_text(text.replace(old, new, 1))
    return str(tmp_path / 'x.yml')


def test_architecture_options_read_from_the_source_files_equal_the_classes_signatures():
    """Guards the reading of our archs' __init__ from their files (a missed class, keyword-only arguments)."""
    from basicsr.utils.registry import ARCH_REGISTRY
    found = our_architectures()
    assert {'PromptIR', 'Restormer', 'AirNet', 'AdaIR', 'MoCEIR', 'BioIR'} <= set(found)
    for name, (names, takes_kwargs) in found.items():
        parameters = list(inspect.signature(ARCH_REGISTRY.get(name)).parameters.values())
        assert names == tuple(p.name for p in parameters if p.kind is not p.VAR_KEYWORD), name
        assert takes_kwargs == any(p.kind is p.VAR_KEYWORD for p in parameters), name


def test_dataset_keys_read_from_the_source_files_equal_the_classes_options():
    """Guards the reading of our datasets' OPTIONS from their files (spreads of imported dicts, entry schemas)."""
    import promptir_basicsr.data  # noqa: F401 (registers the datasets)
    from basicsr.utils.registry import DATASET_REGISTRY
    found = our_datasets()
    assert {'AllInOneDataset', 'DegradedImageDataset'} <= set(found)
    for name, (keys, nested) in found.items():
        options = DATASET_REGISTRY.get(name).OPTIONS
        assert keys == tuple(options), name
        assert nested == {k: tuple(spec.items) for k, spec in options.items() if spec.items is not None}, name
    assert 'dataroot_gt' in found['AllInOneDataset'][1]['sources'] and 'weight' in found['AllInOneDataset'][1]['sources']


def test_model_keys_read_from_the_source_files_equal_the_classes_options():
    """Guards the reading of our models' OPTIONS from their files: bases merged (the mixin's and AllInOneModel's
    keys in AirNetModel), comprehension spreads (the progressive-patch keys) followed."""
    import promptir_basicsr.models  # noqa: F401 (registers the models)
    from basicsr.utils.registry import MODEL_REGISTRY
    from promptir_basicsr.utils.option_keys import declared_sections
    found = our_models()
    assert {'AllInOneModel', 'ContrastiveModel', 'AirNetModel', 'MoCEIRModel'} <= set(found)
    for name, sections in found.items():
        declared = declared_sections(MODEL_REGISTRY.get(name))
        assert {section: set(keys) for section, keys in sections.items()} == \
            {section: set(keys) for section, keys in declared.items()}, name
    assert {'iters', 'deterministic', 'contrastive_weight'} <= set(found['AirNetModel']['train']) | \
        set(found['AirNetModel'][''])


@pytest.mark.parametrize('old, new, expected', [
    ('  total_iter: 500', '  grad_chekpoint: false\n  total_iter: 500',
     "unknown key `train:grad_chekpoint` (did you mean 'grad_checkpoint'?)"),
    ('    gt_size:', '    gt_sise:', "unknown key `datasets:train:gt_sise` (did you mean 'gt_size'?)"),
    ('  prompt_len:', '  prompt_lenght:', "unknown key `network_g:prompt_lenght` (did you mean 'prompt_len'?)"),
    ('  print_freq:', '  print_frq:', "unknown key `logger:print_frq` (did you mean 'print_freq'?)"),
    ('  total_iter: 500', "  total_iter: '500'",
     "`train:total_iter` must be a number, got '500' (YAML reads 500 as text: write 500 or !!float 500)"),
])
def test_quick_check_says_what_the_full_check_says(tmp_path, old, new, expected):
    path = _with(DEMO, tmp_path, old, new)
    quick = static_problems(read_option_file(path), check_paths=False)
    assert expected in quick
    assert expected in collect_problems(read_option_file(path))  # the same message from the full check
    with pytest.raises(OptionError, match=r'problem\(s\) in the options'):
        check_file(path)


def test_a_misspelt_missing_required_key_is_named_and_paths_are_checked(tmp_path):
    opt = read_option_file(DEMO)
    opt['netwrok_g'] = opt.pop('network_g')
    opt['path'] = {'pretrain_network_g': str(tmp_path / 'missing.pth')}
    problems = static_problems(opt)
    assert "unknown key `netwrok_g` (did you mean 'network_g'?)" in problems
    assert 'missing required key `network_g`' in problems
    assert f'path:pretrain_network_g: {tmp_path / "missing.pth"} does not exist' in problems


def test_a_misspelt_source_key_is_found_in_each_entry(tmp_path):
    path = _with(DEMO, tmp_path, '{name: noise25, dataroot_gt:', '{name: noise25, dataroot_gtt:')
    assert static_problems(read_option_file(path), check_paths=False) == [
        "unknown key `datasets:train:sources[1]:dataroot_gtt` (did you mean 'dataroot_gt'?)"]


def test_an_unknown_dataset_key_close_to_no_missing_key_waits_for_the_full_check(tmp_path):
    """Only a near-miss of a key the section lacks is told from the file alone (a model may declare keys of the
    train set): `patch_size` (no missing key is near it) is left to the full check, which names it."""
    path = _with(DEMO, tmp_path, '    gt_size:', '    patch_size: 64\n    gt_size:')
    assert static_problems(read_option_file(path), check_paths=False) == []
    assert any('datasets:train:patch_size' in p for p in collect_problems(read_option_file(path)))


def test_models_own_keys_wait_for_the_full_check():
    """A top-level or train key a model declares (grad_checkpoint) is not refused by the quick check."""
    opt = read_option_file(DEMO)
    opt['train']['grad_checkpoint'] = True
    opt['channels_last'] = True
    assert static_problems(opt, check_paths=False) == []


def test_a_mistake_is_reported_without_loading_torch(tmp_path):
    path = _with(DEMO, tmp_path, '  print_freq:', '  print_frq:')
    code = ('import sys\nfrom promptir_basicsr import cli\nstatus = cli.main(["train", "-opt", sys.argv[1]])\n'
            'print(status, "torch" in sys.modules, "basicsr" in sys.modules)')
    proc = subprocess.run([sys.executable, '-c', code, path], capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ['2', 'False', 'False'], proc.stderr
    assert "unknown key `logger:print_frq` (did you mean 'print_freq'?)" in proc.stderr


def test_a_plugin_that_cannot_be_imported_comes_first(tmp_path):
    (tmp_path / 'x.yml').write_text(yaml.safe_dump({'plugins': ['no_such_module_here'], 'name': 'x'}))
    with pytest.raises(OptionError, match=r"x\.yml: plugins: cannot import module 'no_such_module_here'"):
        check_file(str(tmp_path / 'x.yml'))

"""options/checker.py: the checks that need only the file answer before torch loads, and say what the full check says."""
import inspect
import subprocess
import sys

import pytest
import yaml

from promptir_basicsr.errors import OptionError
from promptir_basicsr.options.checker import (_SourceModule, check_file, our_architectures, our_datasets, our_models,
                                              static_problems)
from promptir_basicsr.options.files import read_option_file
from promptir_basicsr.options.schema import collect_problems

DEMO = 'options/demo/promptir_demo.yml'


def _with(path, tmp_path, old, new):
    text = open(path, encoding='utf-8').read()
    assert old in text
    (tmp_path / 'x.yml').write_text(text.replace(old, new, 1))
    return str(tmp_path / 'x.yml')


@pytest.fixture
def read_anew(monkeypatch):
    """The source files read again, not taken from the caches of an earlier call: mutation testing forks each
    mutant's run from a process whose caches already hold the unmutated reading."""
    monkeypatch.setattr(_SourceModule, '_cache', {})
    our_datasets.cache_clear()
    our_models.cache_clear()
    yield
    our_datasets.cache_clear()
    our_models.cache_clear()


def test_architecture_options_read_from_the_source_files_equal_the_classes_signatures():
    """Guards the reading of our archs' __init__ from their files (a missed class, keyword-only arguments)."""
    from basicsr.utils.registry import ARCH_REGISTRY
    found = our_architectures()
    assert {'PromptIR', 'Restormer', 'AirNet', 'AdaIR', 'MoCEIR', 'BioIR'} <= set(found)
    for name, (names, takes_kwargs) in found.items():
        parameters = list(inspect.signature(ARCH_REGISTRY.get(name)).parameters.values())
        assert names == tuple(p.name for p in parameters if p.kind is not p.VAR_KEYWORD), name
        assert takes_kwargs == any(p.kind is p.VAR_KEYWORD for p in parameters), name


def test_dataset_keys_read_from_the_source_files_equal_the_classes_options(read_anew):
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


def test_model_keys_read_from_the_source_files_equal_the_classes_options(read_anew):
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


# A package the checker reads the way it reads ours (never imported: only parsed): every form of OPTIONS it follows,
# and the forms it must leave alone.
_DEEP = """DEEP = {'deep_key': Key()}
"""
_SHARED = """from .sub.deep import DEEP
ENTRY = {'name': Key(str, required=True), 'weight': Key(float)}
PHASE_KEYS = ('iters', 'gt_sizes', 3)
BASE = {'base_a': Key(), 'sources': Key(list, items=ENTRY), **DEEP}
"""
_DATASET = """import os
from os.path import join
from . import shared
from .missing_module import GONE
from .shared import BASE, ENTRY as ITEM, PHASE_KEYS
SHARED, (LEFT, RIGHT) = Key(int), (1, 2)
LOCAL_NAMES = ['loc_x', 'loc_y']
PAIRS = ('ab', 'cd')
OPTIONS = {
    'own': Key(list, required=True, items=ITEM),
    'alias': SHARED,
    'table': {name: 0 for name in LOCAL_NAMES},
    **BASE,
    **{key: Key() for key in PHASE_KEYS},
    **{key: Key() for key in LOCAL_NAMES},
    **{key: Key() for key in ('lit_p', 'lit_q')},
    **{key.upper(): Key() for key in LOCAL_NAMES},
    **{other: Key() for key in LOCAL_NAMES},
    **{key: Key() for key, value in PAIRS},
    **{key: Key() for key in LOCAL_NAMES for value in PAIRS},
    **{key: Key() for key in SHARED},
    **GONE,
    **join,
    **dict(extra=Key()),
    3: Key(),
    'last': Key(choices=('a', )),
}
"""


def test_option_keys_are_read_through_spreads_imports_and_comprehensions(tmp_path, monkeypatch):
    """What the quick check knows of a class's OPTIONS without importing it: string keys in order, ``**NAME`` spreads
    of dicts bound here or imported (relative imports, dotted modules, ``as`` names, spreads inside them),
    ``**{key: ... for key in NAMES}`` over a tuple or list of strings (bound here, imported, or written out), and the
    entry keys of ``items=NAME``. What it cannot follow adds nothing: another expression as the key or the loop
    target, two loops, a loop over something not a tuple or list, a name from a missing module or an absolute
    import, a call, a key that is not a string."""
    monkeypatch.setattr(_SourceModule, '_cache', {})  # read the files written here, not an earlier reading
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'deep.py').write_text(_DEEP)
    (tmp_path / 'shared.py').write_text(_SHARED)
    (tmp_path / 'dataset.py').write_text(_DATASET)
    module = _SourceModule.read(str(tmp_path / 'dataset.py'))
    assert _SourceModule.read(str(tmp_path / 'dataset.py')) is module  # each file is parsed once
    options = module.tree.body[-1].value
    keys, nested = module.dict_keys(options)
    assert keys == ('own', 'alias', 'table', 'base_a', 'sources', 'deep_key', 'iters', 'gt_sizes', 'loc_x', 'loc_y',
                    'lit_p', 'lit_q', 'last')
    assert nested == {'own': ('name', 'weight'), 'sources': ('name', 'weight')}
    _, names = module.resolve('LOCAL_NAMES')
    assert [v.value for v in names.elts] == ['loc_x', 'loc_y']
    shared, phase_keys = module.resolve('PHASE_KEYS')  # found in the module it is imported from
    assert shared.path == str(tmp_path / 'shared.py') and [v.value for v in phase_keys.elts] == ['iters', 'gt_sizes', 3]
    assert module.resolve('GONE') == (None, None) and module.resolve('join') == (None, None)
    assert module.resolve('nowhere') == (None, None)


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


def test_quick_check_of_our_datasets_past_sets_it_does_not_read():
    """Sets that are not mappings, have no type or are not ours are left to the full check without ending the walk:
    our train set after them is still read (a misspelt key, a missing loader key of the train set)."""
    opt = read_option_file(DEMO)
    train = opt['datasets']['train']
    train['gt_sise'] = train.pop('gt_size')
    del train['batch_size_per_gpu']
    paired = {'name': 'p', 'type': 'PairedImageDataset', 'dataroot_gt': '.', 'dataroot_lq': '.',
              'io_backend': {'type': 'disk'}}
    opt['datasets'] = {'val_0': 5, 'val_00': {'name': 'x'}, 'val_p': paired, **opt['datasets']}
    assert static_problems(opt, check_paths=False) == [
        "unknown key `datasets:train:gt_sise` (did you mean 'gt_size'?)",
        'missing required key `datasets:train:batch_size_per_gpu`']


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

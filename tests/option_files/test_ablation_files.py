"""options/ablation/: each comparison file composes into valid option files that differ from their reference only
where the comparison's question says (the same data, seeds, iterations, optimizer, schedule and validation)."""
import glob
import os.path as osp

import pytest

from promptir_basicsr.commands.ablate import merge_options, read_comparison
from promptir_basicsr.errors import UserError
from promptir_basicsr.options.files import read_option_file
from promptir_basicsr.options.prepare import validate_options

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FILES = sorted(glob.glob(osp.join(REPO, 'options', 'ablation', '*', '*.yml')))
# what the variants of each comparison may change (besides `name` and `val:table_name`)
ALLOWED = {
    'a_prompts_or_compute': ('network_g',), 'b_fixed_prompts': ('network_g:prompt_learnable',),
    'c_prompt_levels': ('network_g:prompt_levels',), 'd_task_combinations': ('datasets:train:use_sources',),
    'e_prompt_source': ('model_type', 'network_g:prompt_source', 'network_g:cbde_', 'datasets:train:num_crops',
                        'train:contrastive_weight', 'train:encoder_iters'),
    'line': ('*', ),  # the whole line: every network with its own demo recipe
}


def flatten(node, prefix=''):
    """{'a:b:c': value} for nested mappings (lists are values)."""
    if not isinstance(node, dict):
        return {prefix: node}
    out = {}
    for key, value in node.items():
        out.update(flatten(value, f'{prefix}:{key}' if prefix else str(key)))
    return out


def test_every_question_has_its_files():
    names = {osp.relpath(p, osp.join(REPO, 'options', 'ablation')) for p in FILES}
    assert names == {f'{kind}/{q}.yml' for kind in ('demo', 'full') for q in ALLOWED if q != 'line'} | {'demo/line.yml'}


@pytest.mark.parametrize('path', FILES, ids=lambda p: osp.relpath(p, REPO))
def test_variants_are_valid_and_differ_only_where_they_should(path, tmp_path):
    """Guards a variant that drifts from its reference in budget, data or seed (an unfair comparison), a typo'd key,
    a variant that equals its reference, and a header command that names another file."""
    question = osp.splitext(osp.basename(path))[0]
    option_files, test_file = read_comparison(path, str(tmp_path))
    assert osp.isfile(test_file)
    reference = flatten(read_option_file(option_files[0]))
    text = open(path, encoding='utf-8').read()
    assert f'basicsr ablate {osp.relpath(path, REPO)}' in text  # the command in the header runs this file
    for option_file in option_files:
        opt = read_option_file(option_file)
        validate_options(opt, option_file, is_train=True, check_paths=False)
        if option_file == option_files[0] or ALLOWED[question] == ('*', ):
            continue
        mine = flatten(opt)
        changed = {k for k in set(reference) | set(mine) if reference.get(k, '<absent>') != mine.get(k, '<absent>')}
        changed -= {'name', 'val:table_name'}
        assert changed, f'{option_file} equals its reference'
        assert all(k.startswith(ALLOWED[question]) for k in changed), sorted(changed)


def test_run_names_are_unique_across_comparisons_and_files(tmp_path):
    """`basicsr ablate` runs each variant as experiments/<name>_seed<S>: one name for two different option sets would
    make them share runs. Within a comparison every name is new; across comparisons a name means the same options."""
    seen = {}
    for i, path in enumerate(FILES):
        option_files, _ = read_comparison(path, str(tmp_path / str(i)))
        names = [osp.splitext(osp.basename(f))[0] for f in option_files]
        assert len(names) == len(set(names)), path
        for option_file, name in zip(option_files, names):
            options = read_option_file(option_file)
            options.pop('val', None)  # the table name may differ between comparisons
            assert seen.setdefault(name, options) == options, f'{name} means two option sets'


def test_merge_options_merges_mappings_and_replaces_other_values_and_classes():
    base = {'network_g': {'type': 'PromptIR', 'dim': 16, 'prompt_len': 5}, 'datasets': {'train': {'sources': [1, 2]}},
            'train': {'optim_g': {'type': 'AdamW', 'lr': 2e-4}}}
    merged = merge_options(base, {'network_g': {'prompt_len': 3}, 'datasets': {'train': {'sources': [2]}},
                                  'train': {'optim_g': {'lr': 1e-3}}}, 'x')
    assert merged == {'network_g': {'type': 'PromptIR', 'dim': 16, 'prompt_len': 3},
                      'datasets': {'train': {'sources': [2]}}, 'train': {'optim_g': {'type': 'AdamW', 'lr': 1e-3}}}
    # another class reads other keys: its mapping replaces the base's (no PromptIR keys left on a Restormer)
    assert merge_options(base, {'network_g': {'type': 'Restormer', 'dim': 8}}, 'x')['network_g'] == {
        'type': 'Restormer', 'dim': 8}
    assert base['network_g'] == {'type': 'PromptIR', 'dim': 16, 'prompt_len': 5}  # the base is not changed
    with pytest.raises(UserError, match=r'^x: expected a mapping of option overrides, got 3$'):
        merge_options(base, 3, 'x')

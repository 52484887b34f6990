"""options/ablation/: every file is valid and commented, and differs from its comparison's reference only where
its question says (the same data, seeds, iterations, optimizer, schedule and validation across a comparison)."""
import glob
import os.path as osp
import re

import pytest

from promptir_basicsr.options.files import read_option_file
from promptir_basicsr.options.prepare import validate_options

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FILES = sorted(glob.glob(osp.join(REPO, 'options', 'ablation', '*', '*.yml')))
REFERENCES = {'demo': 'options/demo/promptir_demo.yml', 'full': 'options/train/promptir_allinone.yml'}
# what each variant may change (besides `name` and `val:table_name`), by file name
ALLOWED = {
    'restormer': ('network_g:',), 'restormer_matched': ('network_g:',),
    'promptir_fixed': ('network_g:prompt_learnable',),
    'promptir_latent': ('network_g:prompt_levels',), 'promptir_levels43': ('network_g:prompt_levels',),
    'promptir_cbde': ('model_type', 'network_g:prompt_source', 'network_g:cbde_', 'datasets:train:num_crops',
                      'train:contrastive_weight', 'train:encoder_iters'),
    **{f'promptir_{d}': ('datasets:train:sources',) for d in
       ('noise', 'rain', 'haze', 'noise_rain', 'noise_haze', 'rain_haze')},
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
    assert names == {f'demo/{n}.yml' for n in ALLOWED} | {f'full/{n}.yml' for n in ALLOWED if n != 'restormer'}


@pytest.mark.parametrize('path', FILES, ids=lambda p: osp.relpath(p, REPO))
def test_valid_commented_and_differs_only_where_it_should(path):
    """Guards a variant that drifts from its reference in budget, data or seed (an unfair comparison), a typo'd
    key, or an ablation file that accidentally equals its reference."""
    kind, stem = osp.basename(osp.dirname(path)), osp.splitext(osp.basename(path))[0]
    opt = read_option_file(path)
    validate_options(opt, path, is_train=True, check_paths=False)
    text = open(path, encoding='utf-8').read()
    assert text.startswith('# Ablation') and text.count('#') > 20 and 'ABLATION' in text
    reference = flatten(read_option_file(osp.join(REPO, REFERENCES[kind])))
    mine = flatten(opt)
    changed = {k for k in set(reference) | set(mine) if reference.get(k, '<absent>') != mine.get(k, '<absent>')}
    changed -= {'name', 'val:table_name'}
    assert changed, 'the variant equals its reference'
    assert all(k.startswith(ALLOWED[stem]) for k in changed), sorted(changed)
    if 'datasets:train:sources' in changed:  # a subset of the reference's sources, each unchanged
        sources = mine['datasets:train:sources']
        assert sources and all(s in reference['datasets:train:sources'] for s in sources)
    # the command in the header names existing files, this one among them
    command = re.search(r'basicsr ablate (.*?) --test-opt (\S+)', text)
    files = command.group(1).split() + [command.group(2)]
    assert osp.relpath(path, REPO) in files and all(osp.isfile(osp.join(REPO, f)) for f in files)


def test_run_names_are_unique_across_option_files():
    """`basicsr ablate` runs each file as experiments/<name>_seed<S>: two files with one name would share runs."""
    names = [read_option_file(p)['name'] for p in FILES + glob.glob(osp.join(REPO, 'options', '*', '*.yml'))]
    assert len(names) == len(set(names))

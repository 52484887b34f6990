"""`basicsr prompts` in this process (promptir_basicsr/commands/prompts.py), beyond the runs of
test_commands_in_process.py: the labelled sets read as basicsr reads a test file's datasets, the file's CPU threads,
the progress bar, which modules count as prompt blocks, and the parser."""
import json

import pytest
import torch
import yaml
from basicsr.archs import build_network
from cli_helpers import paired_set, write_pairs

from promptir_basicsr import cli
from promptir_basicsr.commands import prompts

TINY_PROMPTIR = dict(type='PromptIR', dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1],
                     ffn_expansion_factor=2, prompt_len=3, prompt_dims=[4, 8, 8], prompt_sizes=[4, 4, 4])


def test_prompts_reads_the_test_sets_as_basicsr_does(tmp_path, monkeypatch, capsys):
    """A dataset key with or without a number (test, test_2), dataroots under ~ (expanded, as basicsr expands
    them), a set named '~/raw' keeping its name (only dataroots are paths); the file's cpu_threads handed to torch;
    the progress bar counts images."""
    monkeypatch.setenv('HOME', str(tmp_path))
    monkeypatch.chdir(tmp_path)
    write_pairs(tmp_path / 'data' / 'Noise', 2, 16, seed=1)
    write_pairs(tmp_path / 'data' / 'Rain', 1, 16, seed=2)
    torch.manual_seed(0)
    torch.save({'params': build_network(dict(TINY_PROMPTIR)).state_dict()}, tmp_path / 'w.pth')
    raw = dict(paired_set('~/raw', tmp_path, 'test'), dataroot_gt='~/data/Noise/gt', dataroot_lq='~/data/Noise/lq')
    opt = {'name': 'p', 'model_type': 'AllInOneModel', 'num_gpu': 0, 'cpu_threads': 3,
           'datasets': {'test': raw, 'test_2': paired_set('Rain', tmp_path / 'data' / 'Rain', 'test')},
           'network_g': dict(TINY_PROMPTIR), 'path': {'pretrain_network_g': 'w.pth'}}
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(opt, sort_keys=False))
    threads = []
    monkeypatch.setattr(torch, 'set_num_threads', threads.append)
    assert cli.main(['prompts', '--opt', 'test.yml', '--device', 'cpu']) == 0
    err = capsys.readouterr().err
    table = json.loads((tmp_path / 'results' / 'p' / 'prompts' / 'prompts.json').read_text())
    assert [row['degradation'] for row in table['rows']] == ['~/raw', 'Rain']
    assert [image['set'] for image in table['images']] == ['~/raw', '~/raw', 'Rain']
    assert sorted(image['name'] for image in table['images']) == ['img00.png', 'img00.png', 'img01.png']
    assert threads == [3]
    assert '3/3 [' in err and 'image' in err


def test_prompt_blocks_need_the_components_and_their_mixing_layer():
    """A module is a prompt block when it has both the learned components and the linear layer whose softmax
    mixes them; either alone is something else."""
    only_layer, only_components, both = torch.nn.Module(), torch.nn.Module(), torch.nn.Module()
    only_layer.linear_layer = both.linear_layer = torch.nn.Linear(2, 2)
    only_components.prompt_param = both.prompt_param = torch.nn.Parameter(torch.zeros(1))
    net = torch.nn.ModuleDict({'a': only_layer, 'b': only_components, 'c': both})
    assert prompts.prompt_blocks(net) == {'c': both}


def test_prompts_parser(capsys):
    parser = prompts.build_parser()
    args = parser.parse_args(['--opt', 't.yml'])
    assert (args.opt, args.weights, args.output, args.device) == ('t.yml', None, None, 'auto')
    args = parser.parse_args(['-opt', 't.yml', '--weights', 'w.pth', '-o', 'out', '--device', 'cpu'])
    assert (args.opt, args.weights, args.output, args.device) == ('t.yml', 'w.pth', 'out', 'cpu')
    for argv, message in (([], 'the following arguments are required: -opt/--opt'),
                          (['-opt', 't.yml', '--threads', '2'], 'unrecognized arguments: --threads 2')):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err

"""The whole all-in-one line under one protocol, from official releases as they are (docs/models.md, "The line
from official weights"): each network's shipped test option file with ``path:pretrain_network_g`` set to an
official-layout file (Lightning .ckpt, AirNet's plain state dict, Restormer's params), then ``basicsr table``.
Run on a miniature copy of the official test folders with tiny networks of each architecture."""
import json

import pytest
import torch
import yaml
from cli_helpers import make_official_layout, run_cli

from promptir_basicsr.options.files import read_option_file

# architecture -> (test option file, tiny options, official layout of its release)
LINE = {
    'PromptIR': ('promptir_allinone', dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1,
                                           heads=[1, 1, 1, 1], prompt_dims=[4, 8, 8], prompt_sizes=[4, 4, 4]),
                 'lightning'),
    'AdaIR': ('adair_allinone', dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1]),
              'lightning'),
    'MoCEIR': ('moce_ir_allinone', dict(dim=8, num_blocks=[1, 1, 1, 1], num_dec_blocks=[1, 1, 1],
                                        num_refinement_blocks=1, heads=[1, 1, 1, 1]), 'lightning'),
    'BioIR': ('bioir_allinone', dict(dim=8, num_blocks=[1, 1, 1], num_refinement_blocks=1), 'lightning'),
    'AirNet': ('airnet_allinone', dict(n_feats=8, n_groups=1, n_blocks=1, encoder_widths=[8, 8], moco_dim=8,
                                       queue_size=20), 'plain'),
    'Restormer': ('restormer_allinone', dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1,
                                             heads=[1, 1, 1, 1]), 'params'),
}


def _official_file(arch, options, layout, path):
    from basicsr.archs import build_network
    torch.manual_seed(0)
    state = build_network({'type': arch, **options}).state_dict()
    if layout == 'lightning':
        torch.save({'state_dict': {f'net.{k}': v for k, v in state.items()}, 'epoch': 1}, path)
    elif layout == 'plain':
        state['E.E.queue'] = torch.nn.functional.normalize(torch.randn(8, 1280), dim=0)  # batch 5's queue
        torch.save(state, path)
    else:
        torch.save({'params': state}, path)


@pytest.mark.slow
def test_the_line_from_official_layouts_under_one_protocol(tmp_path):
    make_official_layout(tmp_path)
    folders = []
    for arch, (name, options, layout) in LINE.items():
        weights = tmp_path / f'{name}{".ckpt" if layout == "lightning" else ".pth"}'
        _official_file(arch, options, layout, weights)
        opt = read_option_file(f'options/test/{name}.yml')
        # the shipped file as it is, but for the network's size (the test's networks are tiny)
        opt['network_g'] = {'type': arch, **options}
        opt['val']['save_img'] = False
        (tmp_path / f'{name}.yml').write_text(yaml.safe_dump(opt, sort_keys=False))
        run_cli(['test', '-opt', f'{name}.yml', '--force_yml', f'path:pretrain_network_g={weights}'], cwd=tmp_path)
        folders.append(f'results/{opt["name"]}')
    out = run_cli(['table', *folders, '-o', 'results/line'], cwd=tmp_path).stdout
    table = json.loads((tmp_path / 'results' / 'line' / 'results_table.json').read_text())
    models = [row['model'] for row in table['rows'] if not row.get('reference')]
    assert len(models) == len(LINE) and len(set(models)) == len(LINE)
    assert [row['model'] for row in table['rows'] if row.get('reference')] == ['Input (degraded)']  # once
    assert len(table['sets']) == 5 and 'BSD68_sigma15' in table['sets']
    for row in table['rows']:
        assert set(row['results']) == set(table['sets'])
        assert all(row['results'][s]['psnr'] > 0 for s in table['sets'])  # inf where the miniature lq equals gt
    # six different networks, six different rows on the noise sets (the miniature's lq differs from gt there)
    assert len({row['results']['BSD68_sigma15']['psnr'] for row in table['rows']}) == len(LINE) + 1
    assert '| Input (degraded) |' in out

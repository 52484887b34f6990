"""``basicsr prompts``: which prompt components a trained PromptIR picks for each degradation.

    basicsr prompts --weights net_g_latest.pth -opt options/demo/promptir_demo_test.yml [-o DIR]

Runs the network over every test set of the option file (each set is one degradation label),
records each prompt block's softmax weights per image, and writes a heatmap per block and a table
(``prompts.md``/``.json``) with the specialisation score (:mod:`promptir_basicsr.visual.prompt_maps`)
to ``results/<name>/prompts/`` (or ``-o``). The network is read from the weights, overridden by the
option file's ``network_g``; tiles follow its ``val:tile_size``/``tile_overlap``.
"""
import argparse
import os.path as osp
import sys
from collections import defaultdict

from ..errors import UserError
from . import arguments

HELP = "record a trained PromptIR's prompt weights per degradation: heatmaps and a specialisation table"


def build_parser(prog='basicsr prompts'):
    parser = argparse.ArgumentParser(
        prog=prog, description="Record PromptIR's prompt weights over the labelled test sets of an option file: "
        'a heatmap per prompt block and a table with a specialisation score (do the prompts learn the degradation?).',
        epilog='example: %(prog)s --weights experiments/promptir_demo/models/net_g_latest.pth '
        '-opt options/demo/promptir_demo_test.yml')
    parser.add_argument('-opt', '--opt', required=True, metavar='TEST.yml',
                        help='a test option file: its datasets are the labelled sets')
    parser.add_argument('--weights', default=None,
                        help="PromptIR weights (default: the option file's path:pretrain_network_g)")
    arguments.add_output_argument(parser, 'output folder (default: results/<name>/prompts)')
    arguments.add_device_arguments(parser, speed=False)
    return parser


def prompt_blocks(net):
    """``{name: module}`` of the network's prompt generation blocks (PromptIR's ``PromptGenBlock``: learned prompt
    components mixed by the softmax of a linear layer; empty for networks without them)."""
    return {name: module for name, module in net.named_modules()
            if hasattr(module, 'prompt_param') and hasattr(module, 'linear_layer')}


class PromptRecorder:
    """Forward hooks on each block's ``linear_layer``: the softmax of its output is the block's weights.

    :meth:`take` returns, per block, the weights averaged over the forward calls since the last take
    (one call per image; several when the image is restored in tiles).
    """

    def __init__(self, blocks):
        self.calls = defaultdict(list)
        self.handles = [block.linear_layer.register_forward_hook(self._hook(name)) for name, block in blocks.items()]

    def _hook(self, name):
        def record(module, inputs, output):
            self.calls[name].append(output.float().softmax(dim=1).mean(0).cpu())
        return record

    def take(self):
        weights = {name: (sum(calls) / len(calls)).tolist() for name, calls in self.calls.items()}
        self.calls.clear()
        return weights

    def close(self):
        for handle in self.handles:
            handle.remove()


def build_labelled_sets(opt):
    """``[(label, dataset)]`` for every dataset of a test option file, built as basicsr builds them."""
    from basicsr.data import build_dataset
    sets = []
    for phase, dataset_opt in opt['datasets'].items():
        dataset_opt = dict(dataset_opt, phase=phase.split('_')[0], scale=opt.get('scale', 1))
        for key, value in dataset_opt.items():
            if key.startswith('dataroot') and isinstance(value, str):
                dataset_opt[key] = osp.expanduser(value)
        sets.append((dataset_opt.get('name') or phase, build_dataset(dataset_opt)))
    return sets


def run(args):
    # The network, the data sets and matplotlib load torch and basicsr: imported when the command runs.
    import torch
    from tqdm import tqdm

    from ..inference import Restorer
    from ..options.prepare import prepare_run
    from ..visual.prompt_maps import summarise, to_markdown, write_report
    from ..weights.network import describe_network, load_network

    force = [f'path:pretrain_network_g={args.weights}'] if args.weights else None
    opt = prepare_run(args.opt, is_train=False, force_yml=force)
    weights = (opt.get('path') or {}).get('pretrain_network_g')
    if not weights:
        raise UserError(f'{args.opt}: no weights: pass --weights or set path:pretrain_network_g')
    try:
        net, network_opt, _ = load_network(weights, overrides=opt.get('network_g'), param_key=None)
    except (UserError, FileNotFoundError) as err:
        raise UserError(f'--weights {weights}: {err}') from None
    blocks = prompt_blocks(net)
    if not blocks:
        raise UserError(f'--weights {weights}: {network_opt["type"]} has no prompt blocks; `basicsr prompts` needs a '
                        'PromptIR network')
    print(f'weights: {weights}; network: {describe_network(network_opt)}')
    val_opt = opt.get('val') or {}
    if opt.get('cpu_threads'):
        torch.set_num_threads(int(opt['cpu_threads']))
    try:
        restorer = Restorer(net, args.device, tile_size=val_opt.get('tile_size'),
                            tile_overlap=val_opt.get('tile_overlap', 32))
    except ValueError as err:
        raise UserError(str(err)) from None

    labelled = build_labelled_sets(opt)
    recorder = PromptRecorder(blocks)
    records = []
    try:
        with tqdm(total=sum(len(d) for _, d in labelled), unit='image', file=sys.stderr) as bar:
            for label, dataset in labelled:
                for index in range(len(dataset)):
                    sample = dataset[index]
                    restorer(sample['lq'][None])
                    name = osp.basename(sample.get('lq_path') or f'{index:05d}')
                    records.append({'set': label, 'name': name, 'weights': recorder.take()})
                    bar.update(1)
    finally:
        recorder.close()

    table = summarise(records, [label for label, _ in labelled], list(blocks))
    table['weights_file'] = str(weights)
    folder = args.output or osp.join('results', opt['name'], 'prompts')
    paths = write_report(table, folder)
    print(to_markdown(table))
    print(f'wrote {", ".join(paths)}')
    return 0


def main(argv=None):
    return run(build_parser().parse_args(argv))

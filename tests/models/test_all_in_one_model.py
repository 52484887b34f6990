import json
import math
import os

import cv2
import numpy as np
import pytest
import torch

from promptir_basicsr.models.all_in_one_model import flatten_sources

from model_test_helpers import PairSet, build, loader


def _batch(n=4, size=16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    gt = torch.rand(n, 3, size, size, generator=gen)
    return {'lq': (gt + 0.1 * torch.randn(n, 3, size, size, generator=gen)).clamp(0, 1), 'gt': gt}


def _step(model, data, it):
    model.update_learning_rate(it)
    model.feed_data(data)
    model.optimize_parameters(it)


def test_default_l1_adamw_and_a_step(tiny_opt):
    model = build(tiny_opt(train={'optim_g': {'type': 'AdamW', 'lr': 1e-3, 'weight_decay': 0.01}}))
    assert isinstance(model.optimizer_g, torch.optim.AdamW)
    assert type(model.cri_pix).__name__ == 'L1Loss'
    before = [p.detach().clone() for p in model.net_g.parameters()]
    _step(model, _batch(), 1)
    assert 'l_pix' in model.get_current_log()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.net_g.parameters()))


def test_ema_follows_decay_and_copies_the_buffers(tiny_opt):
    """ema_decay 0.9 on a network with BatchNorm: after each step every EMA parameter is 0.9 x its previous value +
    0.1 x the trained one, and the EMA's buffers (running mean and variance, batch count: changed by each training
    forward) equal the trained network's, not their initial values; validation uses the EMA network."""
    model = build(tiny_opt(network={'type': '_TestBatchNormNet'}, train={'ema_decay': 0.9}))
    for it in (1, 2):
        ema_before = {k: v.detach().clone() for k, v in model.net_g_ema.named_parameters()}
        _step(model, _batch(seed=it), it)
        net = dict(model.net_g.named_parameters())
        for name, value in model.net_g_ema.named_parameters():
            torch.testing.assert_close(value, 0.9 * ema_before[name] + 0.1 * net[name].detach(), rtol=0, atol=1e-7)
        buffers = dict(model.net_g.named_buffers())
        assert set(buffers) == {'norm.running_mean', 'norm.running_var', 'norm.num_batches_tracked'}
        for name, value in model.net_g_ema.named_buffers():
            assert torch.equal(value, buffers[name]), name
    assert int(model.net_g_ema.norm.num_batches_tracked) == 2
    assert model.net_g_ema.norm.running_mean.abs().min() > 0  # moved from its initial zeros
    assert model.inference_net() is model.net_g_ema


def test_grad_clip(tiny_opt):
    model = build(tiny_opt(train={'use_grad_clip': True, 'optim_g': {'type': 'SGD', 'lr': 1.0}}))
    assert model.grad_clip == 0.01
    before = torch.cat([p.detach().flatten().clone() for p in model.net_g.parameters()])
    _step(model, _batch(), 1)
    after = torch.cat([p.detach().flatten() for p in model.net_g.parameters()])
    assert (after - before).norm() <= 0.01 + 1e-6  # SGD lr 1: the update is the clipped gradient


def test_progressive_patches_and_batches(tiny_opt):
    progressive = {'mini_batch_sizes': [4, 2, 1], 'iters': [2, 2, 2], 'gt_sizes': [8, 12, 16]}
    model = build(tiny_opt(train=progressive))
    seen = {}
    for it in range(1, 8):
        _step(model, _batch(4, 16, seed=it), it)
        seen[it] = (tuple(model.lq.shape), tuple(model.gt.shape))
    assert seen[1][0] == (4, 3, 8, 8) and seen[2][0] == (4, 3, 8, 8)
    assert seen[3][0] == (2, 3, 12, 12) and seen[4][1] == (2, 3, 12, 12)
    assert seen[5][0] == (1, 3, 16, 16) and seen[7][0] == (1, 3, 16, 16)  # the last phase continues
    # lq and gt are cropped at the same place
    data = _batch(4, 16)
    model.update_learning_rate(3)
    model.feed_data({'lq': data['gt'].clone(), 'gt': data['gt']})
    assert torch.equal(model.lq, model.gt)
    # validation batches are never cropped
    model._validating = True
    model.feed_data(_batch(1, 16))
    assert model.lq.shape[-1] == 16


def test_progressive_crop_keeps_whole_samples_and_one_window_at_the_gt_scale(tiny_opt):
    """A phase of 2 samples of 8 px, fed 4 samples of 16 px (gt 32 px: scale 2): the samples kept are distinct and
    in order, with their degradation index; lq is an 8 x 8 window of its sample and gt the same window at twice
    the size; over many draws the window starts anywhere from 0 to 8 on each side. A phase as large as the image
    crops nothing, whichever side is larger."""
    import random
    opt = tiny_opt(train={'mini_batch_sizes': [2], 'iters': [100], 'gt_sizes': [8]})
    opt['scale'] = 2
    model = build(opt)
    lq = torch.arange(4 * 16 * 16, dtype=torch.float32).view(4, 1, 16, 16).expand(4, 3, 16, 16)
    gt = torch.arange(4 * 32 * 32, dtype=torch.float32).view(4, 1, 32, 32).expand(4, 3, 32, 32) + 1e5
    starts, every = set(), set()
    random.seed(0)
    for _ in range(60):
        model.update_learning_rate(1)
        model.feed_data({'lq': lq.clone(), 'gt': gt.clone(), 'deg_index': torch.tensor([10, 11, 12, 13])})
        assert model.lq.shape == (2, 3, 8, 8) and model.gt.shape == (2, 3, 16, 16)
        kept = [int(i) - 10 for i in model.deg_index]
        assert kept == sorted(set(kept))
        for j, k in enumerate(kept):
            first = int(model.lq[j, 0, 0, 0]) - k * 256  # the window's first pixel in its sample
            top, left = divmod(first, 16)
            assert torch.equal(model.lq[j], lq[k, :, top:top + 8, left:left + 8])
            assert torch.equal(model.gt[j], gt[k, :, 2 * top:2 * top + 16, 2 * left:2 * left + 16])
            starts.add((top, left))
        every.update(kept)
    assert {t for t, _ in starts} == {l for _, l in starts} == set(range(9)) and every == {0, 1, 2, 3}
    for size in ((16, 8), (8, 16)) * 10:  # one side as large as the phase, the other larger: still cropped to 8 x 8
        model.feed_data({'lq': torch.zeros(2, 3, *size), 'gt': torch.zeros(2, 3, 2 * size[0], 2 * size[1])})
        assert model.lq.shape == (2, 3, 8, 8) and model.gt.shape == (2, 3, 16, 16)
    model.feed_data({'lq': torch.zeros(2, 3, 8, 8), 'gt': torch.zeros(2, 3, 16, 16)})
    assert model.lq.shape == (2, 3, 8, 8) and model.gt.shape == (2, 3, 16, 16)
    model.feed_data({'lq': torch.zeros(1, 3, 8, 8), 'gt': torch.zeros(1, 3, 16, 16)})  # fewer samples than asked
    assert model.lq.shape[0] == 1
    del opt['scale']  # a file without scale: 1
    model = build(opt)
    model.update_learning_rate(1)
    model.feed_data({'lq': lq[:2].clone(), 'gt': lq[:2].clone()})
    assert torch.equal(model.lq, model.gt) and model.gt.shape == (2, 3, 8, 8)


def test_progressive_from_restormer_dataset_keys(tiny_opt):
    opt = tiny_opt(datasets={'train': {'name': 't', 'mini_batch_sizes': [2], 'iters': [5], 'gt_sizes': [8]}})
    model = build(opt)
    assert model.progressive_phase(3) == (2, 8)


def test_flatten_one_per_source():
    data = {'lq': torch.arange(2 * 3).view(2, 3, 1, 1, 1).float().expand(2, 3, 3, 4, 4),
            'gt': torch.zeros(2, 3, 3, 4, 4), 'deg_index': torch.tensor([[0, 1, 2], [0, 1, 2]]),
            'lq_path': [['a0', 'a1'], ['b0', 'b1'], ['c0', 'c1']]}
    out = flatten_sources(data)
    assert out['lq'].shape == (6, 3, 4, 4) and out['gt'].shape == (6, 3, 4, 4)
    assert out['lq'][:, 0, 0, 0].tolist() == [0, 1, 2, 3, 4, 5]
    assert out['deg_index'].tolist() == [0, 1, 2, 0, 1, 2]
    assert out['lq_path'] == ['a0', 'b0', 'c0', 'a1', 'b1', 'c1']
    plain = _batch(2)
    assert flatten_sources(plain) is plain
    # per-sample values without the source axis pass unchanged: a list of B names, a (B,) tensor
    mixed = dict(data, names=['x', 'y'], index=torch.tensor([7, 8]))
    out = flatten_sources(mixed)
    assert out['names'] == ['x', 'y'] and out['index'].tolist() == [7, 8]


def test_test_pads_to_multiple(tiny_opt):
    seen = []

    model = build(tiny_opt(is_train=False))
    net = model.net_g
    original = net.forward
    net.forward = lambda x: (seen.append(tuple(x.shape)), original(x))[1]
    model.feed_data({'lq': torch.rand(1, 3, 13, 18)})
    model.test()
    assert seen == [(1, 3, 16, 24)] and model.output.shape == (1, 3, 13, 18)


def _restored(net, lq):
    """What the network restores of ``lq`` (3, H, W) as the protocol measures it, computed here: reflect-padded to
    a multiple of 8 with numpy, run, cropped, clamped to [0, 1]; float (H, W, 3) RGB, not quantised."""
    height, width = lq.shape[-2:]
    padded = np.pad(lq.numpy(), ((0, 0), (0, -height % 8), (0, -width % 8)), mode='reflect')
    with torch.no_grad():
        out = net.eval()(torch.from_numpy(padded)[None])[0, :, :height, :width]
    return out.clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float64)


def _psnr(img, ref, peak=1.0):
    """PSNR over every pixel and channel, by its definition."""
    return 10 * math.log10(peak ** 2 / np.mean((np.asarray(img, np.float64) - np.asarray(ref, np.float64)) ** 2))


def _protocol_psnrs(net, dataset):
    """(restored, degraded input) PSNR of each image of ``dataset`` under the paper's protocol."""
    rgb = (lambda t: t.permute(1, 2, 0).numpy().astype(np.float64))
    return ([_psnr(_restored(net, lq), rgb(gt)) for lq, gt in zip(dataset.lq, dataset.gt)],
            [_psnr(rgb(lq), rgb(gt)) for lq, gt in zip(dataset.lq, dataset.gt)])


def _quantised(img):
    """basicsr's tensor2img of a float [0, 1] image: x 255, rounded, uint8."""
    return np.rint(np.clip(img, 0, 1) * 255).astype(np.uint8)


def test_val_psnr_follows_the_protocol_and_images_of_two_sets_do_not_overwrite(tiny_opt, tmp_path):
    """Two sets of 13 x 21 images (not multiples of 8) with the same file names: the protocol PSNR (float RGB, not
    quantised) and basicsr's uint8 PSNR equal the values computed here, the degraded input's too; each set keeps
    its own images (their pixels the quantised restored images) and grid."""
    metrics = {'psnr': {'type': 'calculate_psnr_protocol'}, 'psnr8': {'type': 'calculate_psnr', 'crop_border': 0}}
    model = build(tiny_opt(val={'metrics': metrics}))
    sets = {name: PairSet(name, ['img0', 'img1'], size=(13, 21), seed=len(name) + i)
            for i, name in enumerate(('setA', 'setB'))}
    for name, dataset in sets.items():
        model.validation(loader(dataset), 5, None, save_img=True)
        restored, degraded = _protocol_psnrs(model.net_g, dataset)
        assert model.metric_results['psnr'] == pytest.approx(np.mean(restored), abs=1e-6)
        assert model.input_results_by_set[name]['psnr'] == pytest.approx(np.mean(degraded), abs=1e-6)
        uint8 = [_psnr(_quantised(_restored(model.net_g, lq)), _quantised(gt.permute(1, 2, 0).numpy()), 255.)
                 for lq, gt in zip(dataset.lq, dataset.gt)]
        assert model.metric_results['psnr8'] == pytest.approx(np.mean(uint8), abs=1e-6)
        assert abs(model.metric_results["psnr8"] - model.metric_results["psnr"]) > 1e-5  # the two formats differ
    for name, dataset in sets.items():
        # the images and the set's validation grid (visual/grids.py)
        assert sorted(os.listdir(tmp_path / 'visualization' / name)) == ['grid_5.png', 'img0_5.png', 'img1_5.png']
        saved = cv2.imread(str(tmp_path / 'visualization' / name / 'img1_5.png'))[..., ::-1]
        np.testing.assert_array_equal(saved, _quantised(_restored(model.net_g, dataset.lq[1])))
    assert set(model.best_metric_results) == {'setA', 'setB'}


def test_final_validation_logged_at_total_iter(tiny_opt):
    """The validation train_pipeline runs after its loop (iteration 4, 6...) of weights validated at total_iter
    3 reports that validation (the PSNR of the trained network, computed here), not a new one."""
    model = build(tiny_opt(train={'total_iter': 3}))
    dataset = PairSet('setA', ['a'], size=(11, 19))
    val = loader(dataset)
    for it in range(1, 4):
        _step(model, _batch(), it)
    model.validation(val, 3, None)
    assert model.metric_results['psnr'] == pytest.approx(_protocol_psnrs(model.net_g, dataset)[0][0], abs=1e-6)
    first = dict(model.metric_results)
    model.validation(val, 4, None)  # what train_pipeline passes after its loop (or 5, 6...)
    assert model.best_metric_results['setA']['psnr']['iter'] == 3
    model.validation(val, 6, None)
    assert model.best_metric_results['setA']['psnr']['iter'] == 3
    assert model.metric_results == first
    _step(model, _batch(seed=9), 4)  # new weights: validated again
    model.validation(val, 4, None)
    assert model.metric_results['psnr'] != first['psnr']


def test_test_mode_writes_results_table(tiny_opt, tmp_path):
    """basicsr test: the table holds, per set, the protocol PSNR computed here (13 x 21 and 9 x 10 images), their
    average, and the degraded input's row as the reference."""
    datasets = {'test_1': {'name': 'setA'}, 'test_2': {'name': 'setB'}}
    model = build(tiny_opt(is_train=False, datasets=datasets,
                           val={'metrics': {'psnr': {'type': 'calculate_psnr_protocol'},
                                            'ssim': {'type': 'calculate_ssim_protocol'}}}))
    sets = {'setA': PairSet('setA', ['a', 'b'], size=(13, 21)), 'setB': PairSet('setB', ['a'], size=(9, 10), seed=4)}
    for dataset in sets.values():
        model.validation(loader(dataset), 'unit', None, save_img=False)
    table = json.loads((tmp_path / 'results' / 'results_table.json').read_text())
    assert table['sets'] == ['setA', 'setB'] and table['metrics'] == ['psnr', 'ssim']
    rows = {r['model']: r for r in table['rows']}
    assert set(rows) == {'unit', 'Input (degraded)'} and rows['Input (degraded)']['reference']
    expected = {name: _protocol_psnrs(model.net_g, dataset) for name, dataset in sets.items()}
    for name, (restored, degraded) in expected.items():
        assert rows['unit']['results'][name]['psnr'] == pytest.approx(np.mean(restored), abs=1e-6)
        assert rows['Input (degraded)']['results'][name]['psnr'] == pytest.approx(np.mean(degraded), abs=1e-6)
    assert rows['unit']['average']['psnr'] == pytest.approx(
        (np.mean(expected['setA'][0]) + np.mean(expected['setB'][0])) / 2, abs=1e-6)
    md = (tmp_path / 'results' / 'results_table.md').read_text()
    assert '| Method | setA | setB | Average |' in md and 'PSNR/SSIM' in md


def _spy_forward(model):
    seen = []
    original = model.net_g.forward
    model.net_g.forward = lambda x: (seen.append(tuple(x.shape)), original(x))[1]
    return seen


def test_val_tile_size_restores_tile_by_tile_through_the_model(tiny_opt):
    """Guards `val: tile_size`/`tile_overlap` reaching the tiling helper from AllInOneModel.test(): the
    network sees only 16 px tiles, and the stitched image equals the untiled one (the test net's
    receptive field radius, 2, fits in half the overlap); without overlap the seams show."""
    lq = torch.rand(1, 3, 37, 45)  # padded to 40 x 48: 4 x 5 tiles at stride 8
    outputs = {}
    for name, val in (('whole', {}), ('tiled', {'tile_size': 16, 'tile_overlap': 8}),
                      ('no_overlap', {'tile_size': 16, 'tile_overlap': 0})):
        torch.manual_seed(0)  # the same weights in the three models
        model = build(tiny_opt(is_train=False, val=dict(val, metrics={})))
        seen = _spy_forward(model)
        model.feed_data({'lq': lq})
        model.test()
        outputs[name] = model.output
        assert model.output.shape == (1, 3, 37, 45)
        if name == 'whole':
            assert seen == [(1, 3, 40, 48)]
        else:
            assert seen == [(1, 3, 16, 16)] * (4 * 5 if name == 'tiled' else 3 * 3)
    torch.testing.assert_close(outputs['tiled'], outputs['whole'], rtol=0, atol=1e-6)
    assert (outputs['no_overlap'] - outputs['whole']).abs().max() > 1e-3


def test_saved_images_are_named_by_iteration_or_suffix(tiny_opt, tmp_path):
    """Training validations name images by iteration; a test run by val: suffix, else by the run's name."""
    folder = tmp_path / 'visualization' / 'setA'
    assert build(tiny_opt())._image_path('setA', 'img0', 7) == str(folder / 'img0_7.png')
    for val, suffix in (({'suffix': 'mine'}, 'mine'), ({}, 'unit')):
        model = build(tiny_opt(is_train=False, val=val))
        assert model._image_path('setA', 'img0', 7) == str(folder / f'img0_{suffix}.png')


def test_option_rules_of_the_models():
    """The models' own rules across keys, message by message: the progressive lists (under train, else under
    datasets:train) of one length each, within the loader's crop and batch; none for a test run. The contrastive
    model wants an encoder and two crops, and warns when only its encoder stage would run; MoCE-IR's model wants
    a network with a balance loss."""
    from promptir_basicsr.models.all_in_one_model import AllInOneModel
    from promptir_basicsr.models.contrastive_model import ContrastiveModel
    from promptir_basicsr.models.moce_ir_model import MoCEIRModel

    def opt(train=None, train_set=None, **more):
        return {'model_type': 'AllInOneModel', 'train': dict(train or {}), 'network_g': {'type': 'Restormer'},
                'datasets': {'train': dict({'gt_size': 16, 'batch_size_per_gpu': 4}, **(train_set or {}))}, **more}

    good = {'mini_batch_sizes': [4, 2], 'iters': [5, 5], 'gt_sizes': [8, 16]}
    assert AllInOneModel.option_problems(opt(good), True) == []
    assert AllInOneModel.option_problems(opt(), True) == []
    assert AllInOneModel.option_problems(opt(dict(good, iters=[5])), False) == []
    assert AllInOneModel.option_problems(opt(dict(good, iters=[5])), True) == [
        'train: mini_batch_sizes, iters and gt_sizes need the same length (one value per phase), got [4, 2], [5], '
        '[8, 16]']
    assert AllInOneModel.option_problems(opt(train_set=dict(good, gt_sizes=[8])), True) == [
        'datasets:train: mini_batch_sizes, iters and gt_sizes need the same length (one value per phase), got '
        '[4, 2], [5, 5], [8]']
    empty = {'mini_batch_sizes': [], 'iters': [], 'gt_sizes': []}
    assert AllInOneModel.option_problems(opt(empty), True) == [
        'train: mini_batch_sizes, iters and gt_sizes need the same length (one value per phase), got [], [], []']
    one = {'mini_batch_sizes': [4], 'iters': [5], 'gt_sizes': [16]}  # exactly the loader's crop and batch
    assert AllInOneModel.option_problems(opt(one), True) == []
    assert AllInOneModel.option_problems(opt(dict(one, mini_batch_sizes=[5], gt_sizes=[17])), True) == [
        'train:gt_sizes [17] go beyond datasets:train:gt_size 16: the loader must crop the largest patch (set '
        'gt_size to max(gt_sizes))',
        'train:mini_batch_sizes [5] go beyond datasets:train:batch_size_per_gpu 4: the loader must deliver the '
        'largest batch']

    contrastive = opt(model_type='ContrastiveModel', network_g={'type': 'PromptIR'}, train_set={'num_crops': 2},
                      train={'total_iter': 10})
    assert ContrastiveModel.option_problems(contrastive, True) == [
        'model_type ContrastiveModel trains a contrastive degradation encoder, but network_g PromptIR has none '
        '(set network_g:prompt_source: cbde)']
    contrastive['network_g'] = dict(CBDE)
    assert ContrastiveModel.option_problems(contrastive, True) == []
    contrastive['datasets']['train']['num_crops'] = 1
    assert ContrastiveModel.option_problems(contrastive, True)[-1].startswith(
        'datasets:train:num_crops must be 2 for ContrastiveModel')
    assert ContrastiveModel.option_problems(contrastive, False) == []
    assert ContrastiveModel.option_warnings(contrastive) == []  # no encoder stage by default
    assert ContrastiveModel.option_warnings(dict(contrastive, train={'total_iter': 1})) == []
    for iters, warned in ((9, False), (10, True), (11, True)):
        contrastive['train']['encoder_iters'] = iters
        assert bool(ContrastiveModel.option_warnings(contrastive)) is warned, iters
    assert ContrastiveModel.option_warnings(contrastive) == [
        'train:encoder_iters 11 >= train:total_iter 10: only the contrastive encoder stage runs; the restorer is never '
        'trained']
    moce = opt(model_type='MoCEIRModel')
    assert MoCEIRModel.option_problems(moce, True) == [
        'model_type MoCEIRModel adds the routing balance loss of its network, but network_g Restormer has none '
        '(MoCEIR has; use AllInOneModel otherwise)']
    assert MoCEIRModel.option_problems(moce, False) == []
    moce['network_g'] = {'type': 'MoCEIR'}
    assert MoCEIRModel.option_problems(moce, True) == []


CBDE = {'type': 'PromptIR', 'prompt_source': 'cbde'}


class _Tty:
    """A stream whose isatty() answers ``tty`` (the progress bar's default follows the terminal)."""

    def __init__(self, tty):
        self.tty = tty

    def isatty(self):
        return self.tty

    def write(self, text):
        return len(text)

    def flush(self):
        pass


def test_progress_bar_follows_val_pbar_else_a_terminal_on_both_streams(monkeypatch):
    """val.pbar true/false wins whatever the streams are; unset, the bar is on only when stdout and stderr are
    both terminals (tqdm writes to stderr, the log to stdout)."""
    from promptir_basicsr.models.all_in_one_model import _wants_pbar
    for out_tty, err_tty in ((True, True), (True, False), (False, True), (False, False)):
        monkeypatch.setattr('sys.stdout', _Tty(out_tty))
        monkeypatch.setattr('sys.stderr', _Tty(err_tty))
        assert _wants_pbar({}) is (out_tty and err_tty), (out_tty, err_tty)
        assert _wants_pbar({'pbar': None}) is (out_tty and err_tty), (out_tty, err_tty)
        assert _wants_pbar({'pbar': True}) is True and _wants_pbar({'pbar': 1}) is True
        assert _wants_pbar({'pbar': False}) is False and _wants_pbar({'pbar': 0}) is False


class _RecordingBar:
    """Stands in for tqdm in the model's module: records how it was made and used."""
    made = []

    def __init__(self, **kwargs):
        self.kwargs, self.updates, self.descriptions, self.closed = kwargs, [], [], False
        _RecordingBar.made.append(self)

    def update(self, n):
        self.updates.append(n)

    def set_description(self, text):
        self.descriptions.append(text)

    def close(self):
        self.closed = True


def test_validation_progress_bar_counts_the_images_and_is_closed(tiny_opt, monkeypatch):
    """val.pbar true: one bar per set over its images (total = batches of the loader, unit 'image', not left on
    the screen), advanced and named per image, closed at the end; val.pbar false: none."""
    monkeypatch.setattr('promptir_basicsr.models.all_in_one_model.tqdm', _RecordingBar)
    _RecordingBar.made = []
    model = build(tiny_opt(val={'metrics': {}, 'pbar': True}))
    model.validation(loader(PairSet('setA', ['a', 'b', 'c'], size=8)), 1, None, save_img=False)
    bar, = _RecordingBar.made
    assert bar.kwargs == {'total': 3, 'unit': 'image', 'leave': False}
    assert bar.updates == [1, 1, 1] and bar.descriptions == ['Test a', 'Test b', 'Test c'] and bar.closed
    _RecordingBar.made = []
    model = build(tiny_opt(val={'metrics': {}, 'pbar': False}))
    model.validation(loader(PairSet('setA', ['a'], size=8)), 1, None, save_img=False)
    assert _RecordingBar.made == []


def test_float_rgb_clamps_to_the_unit_range_without_quantising():
    """The protocol metrics' input: (C, H, W) -> (H, W, C) float32, values below 0 and above 1 clamped, the rest
    kept exactly (no rounding to 1/255)."""
    from promptir_basicsr.models.all_in_one_model import _float_rgb
    tensor = torch.tensor([[[-0.5, 0.25]], [[1.5, 0.123456]], [[1.0, 0.0]]], dtype=torch.float64)  # (3, 1, 2)
    out = _float_rgb(tensor)
    assert out.dtype == np.float32 and out.shape == (1, 2, 3)
    np.testing.assert_array_equal(out, np.array([[[0.0, 1.0, 1.0], [0.25, 0.123456, 0.0]]], np.float32))


def test_metrics_take_float_rgb_only_when_they_declare_it():
    from promptir_basicsr.models.all_in_one_model import wants_float_rgb
    assert wants_float_rgb({'type': 'calculate_psnr_protocol'}) is True
    assert wants_float_rgb({'type': 'calculate_psnr'}) is False  # basicsr's: uint8 BGR
    assert wants_float_rgb({'type': 'no_such_metric'}) is False  # unknown: basicsr's own error comes later


class _KeyedSet(torch.utils.data.Dataset):
    """Validation pairs (or lq alone) whose items carry only the path keys given."""

    def __init__(self, name, names, keys, with_gt=True, size=(9, 10)):
        self.opt = {'name': name}
        self.pairs = PairSet(name, names, size=size)
        self.keys, self.with_gt = keys, with_gt

    def __len__(self):
        return len(self.pairs)

    def __getitem__(self, i):
        item = self.pairs[i]
        return {k: v for k, v in item.items() if k in self.keys or k == 'lq' or (k == 'gt' and self.with_gt)}


def test_saved_images_are_named_by_the_lq_path_else_the_gt_path_else_by_count(tiny_opt, tmp_path):
    """Each image is saved (and put in the grid) under its lq file's name, else its gt file's, else its number; a
    set without targets is restored and saved without metrics."""
    model = build(tiny_opt(val={'metrics': {}}))
    cases = {'lq_only': (['lq_path'], True), 'gt_only': (['gt_path'], True), 'none': ([], True),
             'no_gt': (['lq_path'], False)}
    for name, (keys, with_gt) in cases.items():
        model.validation(loader(_KeyedSet(name, ['p', 'q'], keys, with_gt)), 3, None, save_img=True)
    expected = {'lq_only': ['p_3.png', 'q_3.png'], 'gt_only': ['p_3.png', 'q_3.png'],
                'none': ['00000_3.png', '00001_3.png'], 'no_gt': ['p_3.png', 'q_3.png']}
    for name, files in expected.items():
        assert sorted(os.listdir(tmp_path / 'visualization' / name)) == sorted(['grid_3.png'] + files), name
    saved = cv2.imread(str(tmp_path / 'visualization' / 'no_gt' / 'q_3.png'))[..., ::-1]
    np.testing.assert_array_equal(saved, _quantised(_restored(model.net_g, _KeyedSet('x', ['p', 'q'], []).pairs.lq[1])))


class _PartlyPairedSet(_KeyedSet):
    """Validation items of which only the first ``paired`` carry a target."""

    def __init__(self, name, names, paired):
        super().__init__(name, names, ['lq_path'])
        self.paired = paired

    def __getitem__(self, i):
        item = super().__getitem__(i)
        return item if i < self.paired else {k: v for k, v in item.items() if k != 'gt'}


def test_metrics_average_the_images_with_targets_and_a_set_without_any_records_none(tiny_opt, basicsr_log):
    """A set of inputs alone, validated with metrics on, logs a warning and records no metric (averaging nothing gave
    0 dB, logged and kept as a best); a set where only some images have targets averages over those only."""
    model = build(tiny_opt(val={'metrics': {'psnr': {'type': 'calculate_psnr_protocol'}}}))
    model.validation(torch.utils.data.DataLoader(_PartlyPairedSet('alone', ['p', 'q'], 0)), 3, None, save_img=False)
    assert 'alone' not in model.results_by_set and 'alone' not in model.input_results_by_set
    assert 'alone' not in getattr(model, 'best_metric_results', {}) or all(
        record['iter'] == -1 for record in model.best_metric_results['alone'].values())
    assert _logged(basicsr_log, 'Validation set alone has no targets (gt)')
    partly = _PartlyPairedSet('partly', ['p', 'q', 'r'], 1)
    model.validation(torch.utils.data.DataLoader(partly), 3, None, save_img=False)
    restored, degraded = _protocol_psnrs(model.net_g, partly.pairs)
    assert model.results_by_set['partly']['psnr'] == pytest.approx(restored[0], abs=1e-6)
    assert model.input_results_by_set['partly']['psnr'] == pytest.approx(degraded[0], abs=1e-6)


def test_validation_of_a_progressive_model_sees_whole_images_and_every_sample(tiny_opt):
    """Progressive training crops training batches only: a validation in the middle of a 1-sample, 8 px phase
    measures whole 16 x 16 images (the PSNR computed here over the whole image) and leaves training batches
    cropped again afterwards."""
    model = build(tiny_opt(train={'mini_batch_sizes': [1], 'iters': [100], 'gt_sizes': [8]}))
    _step(model, _batch(2, 16), 1)
    dataset = PairSet('setA', ['a', 'b'], size=16)
    model.validation(torch.utils.data.DataLoader(dataset, batch_size=2), 1, None, save_img=False)
    assert model.metric_results['psnr'] == pytest.approx(np.mean(_protocol_psnrs(model.net_g, dataset)[0]), abs=1e-6)
    model.feed_data(_batch(2, 16))
    assert model.lq.shape == (1, 3, 8, 8)


def _logged(records, start):
    return [r.getMessage() for r in records if r.getMessage().startswith(start)]


@pytest.fixture
def basicsr_log():
    """The messages of basicsr's logger (where get_root_logger writes; it may not propagate to the root)."""
    import logging

    class Keep(logging.Handler):
        def __init__(self):
            super().__init__(logging.INFO)
            self.records = []

        def emit(self, record):
            self.records.append(record)

    logger = logging.getLogger('basicsr')
    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_input_metrics_once_per_set_in_training_every_time_in_testing_and_not_when_off(tiny_opt, basicsr_log):
    """The degraded input's metrics: in training once per set (the input does not change), in testing at every
    validation (a set of the same name measured again is measured anew), never with val.input_metrics false."""
    val = {'metrics': {'psnr': {'type': 'calculate_psnr_protocol'}}}
    model = build(tiny_opt(val=val))
    dataset = PairSet('setA', ['a'], size=(9, 10))
    model.validation(loader(dataset), 1, None)
    _step(model, _batch(), 2)
    model.validation(loader(dataset), 2, None)
    assert len(_logged(basicsr_log, 'Input (degraded) setA: psnr: ')) == 1
    assert model.input_results_by_set['setA']['psnr'] == pytest.approx(_protocol_psnrs(model.net_g, dataset)[1][0])

    model = build(tiny_opt(is_train=False, val=val))
    model.validation(loader(PairSet('setA', ['a'], size=(9, 10))), 'unit', None)
    other = PairSet('setA', ['a'], size=(9, 10), seed=3)
    model.validation(loader(other), 'unit', None)
    assert model.input_results_by_set['setA']['psnr'] == pytest.approx(_protocol_psnrs(model.net_g, other)[1][0])

    basicsr_log.clear()
    for is_train in (True, False):
        model = build(tiny_opt(is_train=is_train, val=dict(val, input_metrics=False)))
        model.validation(loader(dataset), 1, None)
        assert model.input_results_by_set == {} and 'psnr' in model.metric_results
    assert _logged(basicsr_log, 'Input (degraded)') == []


def test_validation_grid_gets_each_images_name_input_result_and_target(tiny_opt, monkeypatch):
    """The grid is drawn from the image's name, its degraded input, its restored image and its target."""
    from promptir_basicsr.visual.grids import ValidationGrid
    added = []
    original = ValidationGrid.add
    monkeypatch.setattr(ValidationGrid, 'add', lambda self, *args: (added.append(args), original(self, *args))[1])
    model = build(tiny_opt(val={'metrics': {}}))
    dataset = PairSet('setA', ['a', 'b'], size=(9, 10))
    model.validation(loader(dataset), 1, None)
    assert [args[0] for args in added] == ['a', 'b']
    for (name, lq, output, gt), i in zip(added, (0, 1)):
        assert torch.equal(lq, dataset.lq[i]) and torch.equal(gt, dataset.gt[i])
        np.testing.assert_allclose(output.clamp(0, 1).permute(1, 2, 0).numpy(), _restored(model.net_g, dataset.lq[i]),
                                   rtol=0, atol=1e-6)


def test_results_table_is_written_by_rank_0_and_printed_after_the_last_set(tiny_opt, tmp_path, basicsr_log):
    """basicsr test: the table file is rewritten after every set (rank 0, also when the file has no rank key) and
    printed once, after the last set of the run's datasets; its row is named val.table_name; another rank writes
    nothing (no table, no grid)."""
    datasets = {'test_1': {'name': 'setA'}, 'test_2': {'name': 'setB'}}
    opt = tiny_opt(is_train=False, datasets=datasets, val={'metrics': {'psnr': {'type': 'calculate_psnr_protocol'}},
                                                           'table_name': 'Mine'})
    del opt['rank']
    model = build(opt)
    table_file = tmp_path / 'results' / 'results_table.json'
    set_a = PairSet('setA', ['a'], size=(9, 10))
    model.validation(loader(set_a), 'unit', None)
    table = json.loads(table_file.read_text())
    assert table['sets'] == ['setA'] and [r['model'] for r in table['rows']] == ['Mine', 'Input (degraded)']
    assert table['rows'][0]['results']['setA']['psnr'] == pytest.approx(_protocol_psnrs(model.net_g, set_a)[0][0])
    assert _logged(basicsr_log, 'Results table') == []
    assert os.listdir(tmp_path / 'visualization' / 'setA') == ['grid_unit.png']
    model.validation(loader(PairSet('setB', ['a'], size=(9, 10), seed=2)), 'unit', None)
    assert json.loads(table_file.read_text())['sets'] == ['setA', 'setB']
    printed, = _logged(basicsr_log, 'Results table')
    assert printed.startswith(f"Results table ({tmp_path / 'results' / 'results_table.md'}):\n")
    assert '| Mine |' in printed and '| Input (degraded) |' in printed

    table_file.unlink()
    opt = tiny_opt(is_train=False, datasets=datasets)
    opt['rank'] = 1
    opt['path']['visualization'] = str(tmp_path / 'rank1')
    build(opt).validation(loader(set_a), 'unit', None)
    assert not table_file.exists() and not (tmp_path / 'rank1').exists()  # nor a grid


def test_grad_clip_bounds_the_update_with_and_without_the_fp16_scaler(tiny_opt):
    """grad_clip 0.01 with SGD at lr 1: the update is the gradient clipped to norm 0.01 exactly (the tiny net's
    gradient is far larger), also under fp16 amp, where the scaled gradient is unscaled before clipping."""
    for amp in (None, 'fp16'):
        opt = tiny_opt(train={'grad_clip': 0.01, 'optim_g': {'type': 'SGD', 'lr': 1.0}})
        opt['amp'] = amp
        model = build(opt)
        if amp:  # a start scale whose scaled fp16 gradients stay finite, so the first step is taken
            model.grad_scaler = torch.amp.GradScaler('cpu', init_scale=2.0 ** 8)
        before = torch.cat([p.detach().flatten().clone() for p in model.net_g.parameters()])
        _step(model, _batch(), 1)
        after = torch.cat([p.detach().flatten() for p in model.net_g.parameters()])
        assert float((after - before).norm()) == pytest.approx(0.01, rel=1e-3), amp


def test_test_pads_to_val_pad_to_multiple_and_tiles_with_the_default_overlap(tiny_opt):
    """val.pad_to_multiple replaces the network's multiple (8): 13 x 18 is padded to 16 x 20 for 4. val.tile_size
    48 without tile_overlap overlaps tiles by 32: an 80 px side takes tiles at 0, 16 and 32 (by 33 it would take
    four); the stitched image equals the whole one."""
    opt = tiny_opt(is_train=False, val={'metrics': {}, 'pad_to_multiple': 4})
    del opt['scale']  # a file without scale: 1
    model = build(opt)
    seen = _spy_forward(model)
    model.feed_data({'lq': torch.rand(1, 3, 13, 18)})
    model.test()
    assert seen == [(1, 3, 16, 20)] and model.output.shape == (1, 3, 13, 18)

    lq = torch.rand(1, 3, 80, 48)
    outputs = {}
    for name, val in (('whole', {}), ('tiled', {'tile_size': 48})):
        model = build(tiny_opt(is_train=False, val=dict(val, metrics={})))
        seen = _spy_forward(model)
        model.feed_data({'lq': lq})
        model.test()
        outputs[name] = model.output
    assert seen == [(1, 3, 48, 48)] * 3
    torch.testing.assert_close(outputs['tiled'], outputs['whole'], rtol=0, atol=1e-6)


def test_losses_add_pixel_perceptual_and_style_terms_that_are_given(tiny_opt):
    """SRModel's perceptual loss returns (perceptual, style), either None when its weight is 0: the total adds the
    pixel loss and the terms given, each logged under its name, none logged when absent."""
    model = build(tiny_opt())
    output, target = torch.full((1, 3, 2, 2), 0.5), torch.zeros(1, 3, 2, 2)  # L1: 0.5
    for percep, style in ((2.0, 3.0), (2.0, None), (None, 3.0)):
        seen = []
        model.cri_perceptual = lambda o, t: (seen.append((o, t)), (
            None if percep is None else torch.tensor(percep), None if style is None else torch.tensor(style)))[1]
        total, terms = model.compute_losses(output, target)
        assert seen[0][0] is output and seen[0][1] is target
        assert float(total) == pytest.approx(0.5 + (percep or 0) + (style or 0))
        expected = {'l_pix': 0.5, **({'l_percep': percep} if percep else {}), **({'l_style': style} if style else {})}
        assert {k: float(v) for k, v in terms.items()} == pytest.approx(expected)
    model.cri_pix = None  # a perceptual loss alone
    total, terms = model.compute_losses(output, target)
    assert float(total) == 3.0 and list(terms) == ['l_style']


def test_feed_data_drops_the_crops_a_batch_does_not_carry(tiny_opt):
    """A batch without a target or second crop leaves none from the batch before (a stale lq2 or gt would be
    trained or measured against the wrong image); deg_index follows the batch."""
    model = build(tiny_opt())
    model._validating = True
    full = {'lq': torch.rand(2, 3, 8, 8), 'gt': torch.rand(2, 3, 8, 8), 'lq2': torch.rand(2, 3, 8, 8),
            'gt2': torch.rand(2, 3, 8, 8), 'deg_index': torch.tensor([1, 2])}
    model.feed_data(full)
    for key in ('lq', 'gt', 'lq2', 'gt2'):
        assert torch.equal(getattr(model, key), full[key]), key
    assert model.deg_index.tolist() == [1, 2]
    model.feed_data({'lq': full['gt']})
    assert torch.equal(model.lq, full['gt']) and model.deg_index is None
    assert not any(hasattr(model, key) for key in ('gt', 'lq2', 'gt2'))


def test_frozen_parameters_are_left_out_of_the_optimizer_and_named_once(tiny_opt, basicsr_log):
    """Parameters with requires_grad False are not optimized; one log line counts them and names the first
    three."""
    model = build(tiny_opt())
    names = [name for name, _ in model.net_g.named_parameters()]  # body.0.weight, body.0.bias, body.2.*
    for frozen in (1, 3, 4):
        for i, param in enumerate(model.net_g.parameters()):
            param.requires_grad_(i < len(names) - frozen)
        basicsr_log.clear()
        params = model.optimized_parameters()
        assert [p.data_ptr() for p in params] == [p.data_ptr() for p in list(model.net_g.parameters())[:-frozen]]
        line, = _logged(basicsr_log, f'{frozen} parameter tensors are not optimized')
        assert line.endswith(': ' + ', '.join(names[-frozen:][:3]) + (', ...' if frozen > 3 else ''))


def test_cpu_threads_sets_torchs_threads_on_the_cpu(tiny_opt):
    before = torch.get_num_threads()
    try:
        opt = tiny_opt()
        build(opt)
        assert torch.get_num_threads() == before  # not asked: unchanged
        for threads in (2, 3):
            opt = tiny_opt()
            opt['cpu_threads'] = threads
            build(opt)
            assert torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)

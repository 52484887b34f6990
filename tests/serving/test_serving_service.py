"""What `basicsr serve`'s page does, without a browser: headers read before decoding, uploads refused in one line,
networks found and labelled, results equal to `basicsr restore`'s bytes, scores equal to skimage's; the command's
--help without torch or Gradio, and one line naming the pip command when Gradio is missing."""
import os
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs import build_network
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from promptir_basicsr import cli
from promptir_basicsr.serving import service
from promptir_basicsr.serving.headers import read_header

REPO = Path(__file__).resolve().parents[2]
TINY = dict(type='PromptIR', dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1],
            ffn_expansion_factor=2, prompt_len=3, prompt_dims=[4, 8, 8], prompt_sizes=[4, 4, 4])


def _samples(height, width, channels, dtype, seed=0):
    rng = np.random.default_rng(seed)
    top = {np.uint8: 255, np.uint16: 65535}.get(dtype, 1)
    data = (rng.random((height, width, channels)) * top).astype(dtype)
    return data[..., 0] if channels == 1 else data


@pytest.mark.parametrize('ext, channels, dtype, bits, sample', [
    ('.png', 1, np.uint8, 8, 'uint'), ('.png', 3, np.uint16, 16, 'uint'), ('.png', 4, np.uint8, 8, 'uint'),
    ('.jpg', 1, np.uint8, 8, 'uint'), ('.jpg', 3, np.uint8, 8, 'uint'), ('.bmp', 3, np.uint8, 8, 'uint'),
    ('.tif', 1, np.uint16, 16, 'uint'), ('.tif', 3, np.uint16, 16, 'uint'), ('.tif', 4, np.uint8, 8, 'uint'),
    ('.tif', 3, np.float32, 32, 'float'), ('.webp', 3, np.uint8, 8, 'uint'), ('.webp', 4, np.uint8, 8, 'uint')])
def test_headers_say_what_was_written(tmp_path, ext, channels, dtype, bits, sample):
    """Width, height, channels and sample type as OpenCV wrote them (odd sizes, so width and height cannot be
    swapped unseen); float32 RGB TIFF included, which Pillow cannot identify."""
    path = tmp_path / f'img{ext}'
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == '.webp' and channels == 4 else []  # lossless: alpha kept
    assert cv2.imwrite(str(path), _samples(37, 53, channels, dtype), params)
    header = read_header(path)
    assert (header.width, header.height, header.bits, header.sample) == (53, 37, bits, sample)
    assert header.channels == (3 if ext == '.webp' and channels == 3 else channels)


def test_header_only_png_of_30000_squared_is_refused_without_decoding(tmp_path):
    def chunk(kind, data):
        return len(data).to_bytes(4, 'big') + kind + data + zlib.crc32(kind + data).to_bytes(4, 'big')
    path = tmp_path / 'huge.png'
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', (30000).to_bytes(4, 'big') * 2 + bytes([8, 2, 0, 0, 0]))
                     + chunk(b'IDAT', zlib.compress(b'\x00' * 64)) + chunk(b'IEND', b''))
    with pytest.raises(service.UploadError, match=r'huge.png is 30000 x 30000 pixels \(900 megapixels\), more than '
                                                  r'the 100 megapixels'):
        service.check_upload(path)
    assert service.check_upload(path, max_megapixels=1000) == (30000, 30000)  # the header alone decides the size


def test_bad_uploads_are_one_line_each(tmp_path):
    (tmp_path / 'empty.png').write_bytes(b'')
    (tmp_path / 'text.jpg').write_text('not a picture at all')
    Image.fromarray(_samples(8, 8, 2, np.uint8), 'LA').save(tmp_path / 'gray_alpha.tif')
    Image.fromarray(_samples(8, 8, 4, np.uint8), 'CMYK').save(tmp_path / 'cmyk.tif')
    cv2.imwrite(str(tmp_path / 'double.tif'), _samples(8, 8, 3, np.float64))
    cases = {'empty.png': 'empty.png is empty', 'text.jpg': r'text.jpg is not an image this page reads',
             'gray_alpha.tif': r'gray \+ alpha in a TIFF file', 'cmyk.tif': 'is a CMYK TIFF; convert it to RGB',
             'double.tif': r'has 64-bit float samples'}
    for name, message in cases.items():
        with pytest.raises(service.UploadError, match=message) as err:
            service.check_upload(tmp_path / name, 'the photo')
        assert '\n' not in str(err.value)
    Image.fromarray(_samples(8, 8, 2, np.uint8), 'LA').save(tmp_path / 'gray_alpha.png')  # kept in a PNG
    assert service.check_upload(tmp_path / 'gray_alpha.png') == (8, 8)
    truncated = tmp_path / 'cut.png'  # a valid header, no data: decoding fails in one line, no traceback
    truncated.write_bytes((tmp_path / 'gray_alpha.png').read_bytes()[:40])
    with pytest.raises(service.UploadError, match='cut.png: ') as err:
        service.preview(truncated, 'the photo')
    assert '\n' not in str(err.value)


@pytest.fixture
def two_runs(tmp_path):
    """Two basicsr runs' weights of the same name, and a photo."""
    paths = []
    for i, run in enumerate(('run_a', 'run_b')):
        torch.manual_seed(i)
        net = build_network(dict(TINY)).eval()
        with torch.no_grad():
            net.output.weight.mul_(5)
        path = tmp_path / 'experiments' / run / 'models' / 'net_g_latest.pth'
        path.parent.mkdir(parents=True)
        torch.save({'params': net.state_dict()}, path)
        paths.append(path)
    (tmp_path / 'experiments' / 'run_a' / 'training_states').mkdir()
    (tmp_path / 'experiments' / 'run_a' / 'training_states' / '10.state').write_bytes(b'x')
    rng = np.random.default_rng(0)
    photo = tmp_path / 'photo.png'
    cv2.imwrite(str(photo), cv2.GaussianBlur((rng.random((41, 57, 3)) * 255).astype(np.uint8), (0, 0), 2))
    return paths, photo


def test_networks_from_a_folder_are_labelled_and_write_what_restore_writes(two_runs, tmp_path, capsys):
    """A folder of runs: both weights files found (not the training state), labelled with architecture,
    parameters and run; two files of one name get distinct output names. Each result is byte for byte the file
    `basicsr restore` writes for the same weights and image."""
    paths, photo = two_runs
    found = service.find_weights([str(tmp_path / 'experiments')])
    assert found == [str(p) for p in paths]
    networks = service.load_networks([str(tmp_path / 'experiments')], device='cpu', backend='torch',
                                     log=lambda line: None)
    parameters = sum(p.numel() for p in build_network(dict(TINY)).parameters())
    assert [n.label for n in networks] == [f'PromptIR · {parameters / 1e6:.2f} M parameters · run {run} '
                                           '(net_g_latest.pth)' for run in ('run_a', 'run_b')]
    assert len({n.slug for n in networks}) == 2
    out = tmp_path / 'served'
    out.mkdir()
    for network, weights in zip(networks, paths):
        result, seconds, overhead = service.restore_upload(network, str(photo), str(out))
        assert seconds > 0 and overhead == pytest.approx(48 * 64 / (41 * 57))  # padded to multiples of 8
        restored = tmp_path / f'restored_{weights.parent.parent.name}'
        assert cli.main(['restore', '-i', str(photo), '-o', str(restored), '--weights', str(weights),
                         '--backend', 'torch']) == 0
        assert Path(result).read_bytes() == (restored / 'photo.png').read_bytes()
    capsys.readouterr()
    with pytest.raises(service.UserError, match='no weights files in this folder'):
        service.find_weights([str(tmp_path / 'experiments' / 'run_a' / 'training_states')])


def test_scores_are_the_protocol_psnr_and_ssim_of_the_written_file(tmp_path):
    rng = np.random.default_rng(1)
    result, reference = tmp_path / 'result.png', tmp_path / 'reference.png'
    clean = cv2.GaussianBlur((rng.random((30, 40, 3)) * 255).astype(np.uint8), (0, 0), 2)
    cv2.imwrite(str(reference), clean)
    cv2.imwrite(str(result), np.clip(clean + rng.normal(0, 8, clean.shape), 0, 255).astype(np.uint8))
    a = cv2.imread(str(result))[..., ::-1] / 255.
    b = cv2.imread(str(reference))[..., ::-1] / 255.
    psnr, ssim = service.scores(str(result), str(reference))
    assert psnr == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1), abs=1e-4)  # float32
    assert ssim == pytest.approx(structural_similarity(b, a, data_range=1, channel_axis=-1), abs=1e-5)
    cv2.imwrite(str(reference), clean[:20])
    with pytest.raises(service.UploadError, match='the reference is 40 x 20 pixels, the photo 40 x 30'):
        service.scores(str(result), str(reference))


def test_demo_pairs_are_degraded_images_with_their_references(tmp_path):
    pairs = service.demo_pairs(str(tmp_path / 'demo'), str(tmp_path / 'scratch'))
    kinds = sorted({Path(lq).name.split('_')[0] for lq, _ in pairs})
    assert kinds == ['blur', 'haze', 'lowlight', 'noise25', 'rain'] and len(pairs) == 15
    for lq, gt in pairs:
        degraded, clean = cv2.imread(lq).astype(float), cv2.imread(gt).astype(float)
        assert degraded.shape == clean.shape == (96, 96, 3) and Path(gt).name == Path(lq).stem + '_gt.png'
        assert 1 < np.abs(degraded - clean).mean() < 100  # degraded, and of the same scene


def _python(code, *args, env=None):
    env = dict(os.environ if env is None else env, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''))
    return subprocess.run([sys.executable, '-c', code, *args], capture_output=True, text=True, timeout=300, env=env)


def test_help_answers_without_torch_or_gradio():
    proc = _python('import sys\nfrom promptir_basicsr import cli\ntry:\n    cli.main(["serve", "--help"])\n'
                   'except SystemExit:\n    pass\nprint(sorted(m for m in ("torch", "gradio", "cv2", "basicsr") '
                   'if m in sys.modules))')
    assert proc.returncode == 0, proc.stderr
    assert '--weights PATH [PATH ...]' in proc.stdout and '--max-memory SIZE' in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == '[]'


def test_without_gradio_one_line_names_the_pip_command(tmp_path):
    """Gradio hidden from the import system: exit status 2 and one line with the install command."""
    code = ('import importlib.util, sys\nreal = importlib.util.find_spec\n'
            'importlib.util.find_spec = lambda name, *a: None if name == "gradio" else real(name, *a)\n'
            'from promptir_basicsr import cli\nsys.exit(cli.main(sys.argv[1:]))')
    proc = _python(code, 'serve', '--weights', str(tmp_path / 'x.pth'))
    assert proc.returncode == 2
    assert proc.stderr.strip() == ('basicsr serve: error: basicsr serve needs the optional "web" extra (gradio is '
                                   'not installed): run pip install -r requirements-web.txt -e ".[web]" in the '
                                   'promptir-basicsr folder')

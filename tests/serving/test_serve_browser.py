"""`basicsr serve` in a real browser: headless Chromium (Debian's package) driven by playwright.

One server (two tiny networks, random weights) on a free port of 127.0.0.1, in a child process whose every
connection and name lookup outside the loopback is refused and recorded; it stops by itself (--exit-after) and
is ended by the test. The browser uploads a photo and its reference, restores with both networks (progress in
tiles), compares them in the grid with PSNR/SSIM, downloads each result and checks it byte for byte against what
`basicsr restore` writes for the same weights and image; one network gives the before/after slider; bad uploads
(not an image, empty, 30000 x 30000 pixels, an unsupported mode) give one line each, never a traceback. No
request of the page leaves 127.0.0.1.

The browser's screenshot of the compared results is written to the test's tmp folder, or to docs/serve.png with
PROMPTIR_WRITE_DOCS_SCREENSHOT=1 (docs/serve.md says how to regenerate it).
"""
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from basicsr.archs import build_network

pytest.importorskip('gradio')
sync_api = pytest.importorskip('playwright.sync_api')
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason='needs chromium (apt-get install '
                                                                           'chromium)')]
REPO = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                  '--disable-component-update', '--no-first-run']
TILES = ['--tile-size', '64', '--tile-overlap', '16']  # serve and restore alike: tiles, so the page shows progress
PROMPTIR = dict(type='PromptIR', dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1],
                ffn_expansion_factor=2, prompt_len=3, prompt_dims=[4, 8, 8], prompt_sizes=[4, 4, 4])
RESTORMER = dict(type='Restormer', dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1],
                 ffn_expansion_factor=2)
# Run in the server's process before the command: any connection or name lookup off the loopback is refused
# and written to the file named by argv[1].
NETWORK_GUARD = '''
import ipaddress, socket, sys
record = open(sys.argv[1], 'a')

def loopback(host):
    if host in (None, '', 'localhost'):
        return True
    try:
        return ipaddress.ip_address(str(host).split('%')[0]).is_loopback
    except ValueError:
        return False

def refuse(what):
    record.write(what + '\\n')
    record.flush()
    raise OSError('this test allows no network outside 127.0.0.1')

real_connect, real_connect_ex, real_getaddrinfo = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo

def connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not loopback(address[0]):
        refuse(f'connect {address}')
    return real_connect(self, address)

def connect_ex(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not loopback(address[0]):
        refuse(f'connect {address}')
    return real_connect_ex(self, address)

def getaddrinfo(host, *args, **kwargs):
    if not loopback(host):
        refuse(f'lookup {host}')
    return real_getaddrinfo(host, *args, **kwargs)

socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo
from promptir_basicsr import cli
sys.exit(cli.main(sys.argv[2:]))
'''


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def _weights(path, options, seed):
    torch.manual_seed(seed)
    net = build_network(dict(options)).eval()
    with torch.no_grad():
        net.output.weight.mul_(4)  # far from the input: a visible, network-specific change
    torch.save({'params': net.state_dict()}, path)
    return path


def _png_header_only(path, width, height):
    """A PNG that says width x height in its header but holds one row of data (decoding it would need 2.7 GB)."""
    def chunk(kind, data):
        return len(data).to_bytes(4, 'big') + kind + data + zlib.crc32(kind + data).to_bytes(4, 'big')
    header = width.to_bytes(4, 'big') + height.to_bytes(4, 'big') + bytes([8, 2, 0, 0, 0])
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(b'\x00' * 64))
                     + chunk(b'IEND', b''))
    return path


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('serve')
    rng = np.random.default_rng(0)
    clean = cv2.GaussianBlur(rng.random((240, 320, 3)).astype(np.float32), (0, 0), 4)
    clean = (clean - clean.min()) / (clean.max() - clean.min())
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1)
    cv2.imwrite(str(root / 'photo.png'), (noisy * 255).round().astype(np.uint8))
    cv2.imwrite(str(root / 'clean.png'), (clean * 255).round().astype(np.uint8))
    (root / 'notes.png').write_text('this is a text file, not a picture')
    (root / 'empty.png').write_bytes(b'')
    _png_header_only(root / 'huge.png', 30000, 30000)
    from PIL import Image
    Image.fromarray((rng.random((20, 20, 2)) * 255).astype(np.uint8), 'LA').save(root / 'two_channels.tif')
    return {'root': root, 'weights': [_weights(root / 'promptir_tiny.pth', PROMPTIR, 0),
                                      _weights(root / 'restormer_tiny.pth', RESTORMER, 1)]}


def _env(root):
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get('PYTHONPATH', ''),
                XDG_CACHE_HOME=str(root / 'cache'), OMP_NUM_THREADS='1')


@pytest.fixture(scope='module')
def server(files):
    root = files['root']
    port = _free_port()
    guard_log = root / 'network_attempts.txt'
    guard_log.write_text('')
    command = [sys.executable, '-c', NETWORK_GUARD, str(guard_log), 'serve', '--weights',
               *map(str, files['weights']), '--port', str(port), '--exit-after', '900', '--demo-root',
               str(root / 'demo'), *TILES]
    log = open(root / 'server.log', 'w')
    proc = subprocess.Popen(command, cwd=root, env=_env(root), stdout=log, stderr=subprocess.STDOUT)
    url = f'http://127.0.0.1:{port}/'
    try:
        for _ in range(600):  # up to 5 minutes: torch, Gradio, two exports on a busy 2-core machine
            if proc.poll() is not None:
                raise AssertionError(f'the server exited: {(root / "server.log").read_text()[-3000:]}')
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError(f'the server did not answer: {(root / "server.log").read_text()[-3000:]}')
        yield {'url': url, 'port': port, 'guard_log': guard_log, 'log': root / 'server.log'}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _restore_bytes(root, weights, photo, out):
    """What `basicsr restore` writes for ``weights`` and ``photo`` (the same tiles and backend as the server)."""
    proc = subprocess.run([sys.executable, '-m', 'promptir_basicsr', 'restore', '-i', str(photo), '-o', str(out),
                           '--weights', str(weights), *TILES], cwd=root, env=_env(root), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return (out / photo.name).read_bytes()


def _save_screenshot(png, path):
    """The page's screenshot as a small PNG (a 128-colour palette: a few hundred kB become about a hundred)."""
    import io

    from PIL import Image
    picture = Image.open(io.BytesIO(png)).convert('RGB').quantize(colors=128, dither=Image.Dither.NONE)
    picture.save(path, optimize=True)


def _psnr(a, b):
    from skimage.metrics import peak_signal_noise_ratio
    return peak_signal_noise_ratio(b.astype(np.float64) / 255, a.astype(np.float64) / 255, data_range=1)


def _clear(page, elem_id):
    clear = page.locator(f'#{elem_id} button[aria-label="Clear"]')
    if clear.count():
        clear.first.click()
        page.wait_for_selector(f'#{elem_id} input[type=file]', state='attached', timeout=10000)


def _upload(page, elem_id, path):
    _clear(page, elem_id)
    page.set_input_files(f'#{elem_id} input[type=file]', str(path))
    page.wait_for_selector(f'#{elem_id} td.filename[aria-label="{path.name}"]', timeout=60000)


# The status line alone: true once it is one line (no progress above it) matching the pattern.
STATUS_IS = ('(pattern) => { const lines = document.querySelector("#status").innerText.split("\\n")'
             '.filter(l => l.trim()); return lines.length === 1 && new RegExp(pattern).test(lines[0]); }')


def _restore(page, expect):
    """Press Restore and wait (bounded) until the status line of this request says ``expect`` (a regular
    expression): the page first says 'Restoring ...', so the previous request's line never counts (each line
    awaited here differs from the one before it)."""
    before = page.inner_text('#status').strip()
    page.click('#restore')
    page.wait_for_function('([before, pattern]) => { const lines = document.querySelector("#status").innerText'
                           '.split("\\n").filter(l => l.trim()); return lines.length === 1 && lines[0] !== before; }',
                           arg=[before, expect], timeout=60000)
    page.wait_for_function(STATUS_IS, arg=expect, timeout=180000)
    return page.inner_text('#status').strip()


def test_the_page_restores_compares_and_downloads_what_restore_writes(files, server, tmp_path):
    root = files['root']
    requests = []
    with sync_api.sync_playwright() as playwright:
        # playwright gives every launch a fresh, temporary user-data-dir of its own (it refuses the flag)
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={'width': 1280, 'height': 900}, accept_downloads=True)
            page = context.new_page()
            page.on('request', lambda request: requests.append(request.url))
            page.goto(server['url'])
            page.wait_for_selector('#restore', timeout=120000)
            assert page.title() == 'basicsr serve'
            labels = page.locator('#networks label').all_inner_texts()
            assert [re.sub(r'\s+', ' ', t).strip() for t in labels] == [
                'PromptIR · 0.23 M parameters · promptir_tiny.pth',
                'Restormer · 0.19 M parameters · restormer_tiny.pth']
            assert page.locator('#photo').is_visible() and 'noise25_0001.png' in page.inner_text('body')  # the demos

            # Two networks, a reference: the grid, the scores, progress in tiles, two downloads.
            _upload(page, 'photo', root / 'photo.png')
            _upload(page, 'reference', root / 'clean.png')
            page.locator('#networks label', has_text='Restormer').click()
            page.click('#restore')
            page.wait_for_function('/\\d+\\/\\d+ tiles/.test(document.body.innerText)', timeout=180000)  # progress
            page.wait_for_function(STATUS_IS, arg='^Restored', timeout=180000)
            status = page.inner_text('#status').strip()
            assert status == 'Restored photo.png (320 x 240) with 2 network(s), scored against the reference.'
            page.screenshot(path=str(tmp_path / 'after_restore.png'), full_page=True)
            page.wait_for_selector('#grid img', state='visible', timeout=30000)
            assert page.locator('#grid img').count() >= 3
            assert not page.locator('#slider').is_visible()
            rows = {row[0]: row for row in ([c.strip() for c in r.split('\t')] for r in
                                            page.locator('#scores tbody tr').all_inner_texts())}
            links = page.locator('#downloads a[download]')
            assert links.count() == 2
            shot = (REPO / 'docs' / 'serve.png') if os.environ.get('PROMPTIR_WRITE_DOCS_SCREENSHOT') else \
                tmp_path / 'serve.png'
            _save_screenshot(page.screenshot(full_page=True), shot)
            reference = cv2.imread(str(root / 'clean.png'))
            for i, (weights, label) in enumerate(zip(files['weights'], ['PromptIR', 'Restormer'])):
                with page.expect_download(timeout=60000) as download_info:
                    links.nth(i).click()
                download = download_info.value
                saved = tmp_path / download.suggested_filename
                download.save_as(saved)
                expected = _restore_bytes(root, weights, root / 'photo.png', tmp_path / f'restore_{label}')
                assert saved.read_bytes() == expected, f'{label}: the download differs from basicsr restore'
                assert download.suggested_filename == f'photo_{label}_{weights.stem}.png'
                row = next(r for name, r in rows.items() if name.startswith(label))
                restored = cv2.imread(str(saved))
                assert float(row[3]) == pytest.approx(_psnr(restored, reference), abs=0.006)  # PSNR column
                assert 0 < float(row[4]) <= 1 and float(row[2]) > 1  # SSIM; tile overhead above 1 (tiles)
                assert np.abs(restored.astype(int) - cv2.imread(str(root / 'photo.png'))).mean() > 3  # restored

            # One network: the before/after slider instead of the grid.
            page.locator('#networks label', has_text='Restormer').click()
            assert _restore(page, '^Restored').startswith('Restored photo.png (320 x 240) with 1 network(s)')
            page.wait_for_selector('#slider img', state='visible', timeout=30000)
            assert page.locator('#slider img').count() == 2
            assert not page.locator('#grid').is_visible()

            # Bad uploads: one line in the page each, never a traceback.
            _clear(page, 'reference')
            for name, expected in [('notes.png', 'notes.png is not an image this page reads'),
                                   ('empty.png', 'empty.png is empty'),
                                   ('huge.png', r'is 30000 x 30000 pixels \(900 megapixels\), more than the 100'),
                                   ('two_channels.tif', r'is gray \+ alpha in a TIFF file')]:
                _upload(page, 'photo', root / name)
                line = _restore(page, '^Error')
                assert re.search(expected, line), line
                assert '\n' not in line and 'Traceback' not in page.inner_text('body'), line
        finally:
            browser.close()
    hosts = {re.match(r'^[a-z]+://([^/]+)', url).group(1) for url in requests if re.match(r'^[a-z]+://', url)}
    assert hosts == {f'127.0.0.1:{server["port"]}'}, hosts
    assert server['guard_log'].read_text() == '', 'the server tried to reach the network'
    assert 'Traceback' not in server['log'].read_text()

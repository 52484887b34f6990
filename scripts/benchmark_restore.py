"""Peak memory and time of `basicsr restore` on large photos: does memory stay bounded with tiles?

For each size, a photo of that size is made (scikit-image's astronaut, resized, plus noise) and
restored by the real command in its own process; the table gives that process's peak resident
memory (``ru_maxrss``), wall time, CPU time (user + system: on a shared machine, the figure that
does not depend on the other processes) and megapixels per second.

    python scripts/benchmark_restore.py                                  # 1024, 2048, 4096; tile 256
    python scripts/benchmark_restore.py --sizes 512 1024 --tile 128 --threads 1
    python scripts/benchmark_restore.py --weights experiments/promptir_demo/models/net_g_latest.pth

Without ``--weights`` the network is the full-size official PromptIR (35.6 M parameters, the
default options) with random weights: time and memory do not depend on the values. Not a test:
timings depend on the machine and its load.
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def make_photo(size, path, seed=0):
    """A natural-looking RGB photo of size x size pixels (8-bit PNG)."""
    from skimage import data
    img = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    img += np.random.default_rng(seed).normal(0, 15, img.shape).astype(np.float32)
    cv2.imwrite(path, np.clip(img, 0, 255).astype(np.uint8)[..., ::-1])


def tile_count(size, args):
    from promptir_basicsr.utils.tiling import TileGrid
    return len(TileGrid(size, size, args.tile, args.tile_overlap))


def random_promptir(path):
    import torch

    import promptir_basicsr  # noqa: F401  (compat fixes first: basicsr does not import without them)
    from basicsr.archs import build_network
    torch.manual_seed(0)
    torch.save({'params': build_network({'type': 'PromptIR'}).state_dict()}, path)


def run_restore(args, photo, out_dir, weights):
    """(peak resident memory in bytes, wall seconds, CPU seconds, closing line) of one `basicsr restore`."""
    command = [sys.executable, '-m', 'promptir_basicsr', 'restore', '-i', photo, '-o', out_dir, '--weights',
               weights, '--tile', str(args.tile), '--tile-overlap', str(args.tile_overlap), '--device', 'cpu']
    if args.threads:
        command += ['--threads', str(args.threads)]
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
    start = time.time()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS (Linux: kilobytes)
    seconds = time.time() - start
    output = proc.stdout.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f'restore failed ({proc.returncode}):\n{output}')
    closing = [line for line in output.splitlines() if line.startswith('restored ')]
    return usage.ru_maxrss * 1024, seconds, usage.ru_utime + usage.ru_stime, closing[-1] if closing else ''


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[1024, 2048, 4096])
    parser.add_argument('--tile', type=int, default=256)
    parser.add_argument('--tile-overlap', type=int, default=32)
    parser.add_argument('--threads', type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument('--weights', default=None, help='weights file (default: random full-size PromptIR)')
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights or osp.join(tmp, 'promptir_full_random.pth')
        if not args.weights:
            random_promptir(weights)
        rows = []
        for size in args.sizes:
            photo = osp.join(tmp, f'photo_{size}.png')
            make_photo(size, photo)
            peak, seconds, cpu, closing = run_restore(args, photo, osp.join(tmp, f'out_{size}'), weights)
            rows.append((size, tile_count(size, args), peak, seconds, cpu))
            print(f'{size}x{size}: peak {peak / 2**30:.2f} GiB, {seconds:.0f} s, CPU {cpu:.0f} s ({closing})',
                  flush=True)
    print(f'\nbasicsr restore, {"random full-size PromptIR" if not args.weights else args.weights}, tile {args.tile}, '
          f'overlap {args.tile_overlap}, threads {args.threads or "default"}, CPU\n')
    print('| image | megapixels | tiles | peak resident memory | wall time | CPU time | megapixels/s (wall) |')
    print('|---|:---:|:---:|:---:|:---:|:---:|:---:|')
    for size, tiles, peak, seconds, cpu in rows:
        mp = size * size / 1e6
        print(f'| {size}x{size} | {mp:.1f} | {tiles} | {peak / 2**30:.2f} GiB | {seconds / 60:.1f} min | '
              f'{cpu / 60:.1f} min | {mp / seconds:.4f} |')


if __name__ == '__main__':
    main()

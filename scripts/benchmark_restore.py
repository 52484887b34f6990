"""Restore at scale: peak memory and time of `basicsr restore --max-memory` on a large photo, per network and
backend, and its cost per megapixel against one whole-image forward.

For each architecture (the full-size official network, random weights: time and memory do not depend on the
values) and each backend (torch, onnxruntime), two runs of the real command, each in a fresh process:

- the large photo (default 4096 x 4096) with ``--max-memory`` (default 4G): the process's peak resident memory
  (``ru_maxrss`` of the child, i.e. its VmHWM), the wall and CPU time of the whole process, the tiles the
  budget picked and the tile overhead restore reports (pixels computed / pixels restored);
- ``--rounds`` copies of a small photo (default 512 x 512) restored whole: seconds per megapixel.

The ratio column is (seconds per megapixel, large photo) / (seconds per megapixel, whole 512 x 512), both the
restore loop's own time (its closing line: no start-up, no export); the goal is at most 1.3. The onnxruntime
rows export the network once into a cache folder of this run (the export is not in the loop's time).

    python scripts/benchmark_restore.py                                      # PromptIR, AdaIR, MoCEIR, BioIR
    python scripts/benchmark_restore.py --archs PromptIR --threads 1 --size 4096
    python scripts/benchmark_restore.py --archs AdaIR --size 1024 --whole 256 --backends torch   # quicker

Not a test: timings depend on the machine and its load (the CPU time is the figure that depends least on
other jobs).
"""
import argparse
import os
import os.path as osp
import re
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ARCHS = ('PromptIR', 'AdaIR', 'MoCEIR', 'BioIR')


def make_photo(size, path, seed=0):
    """A natural-looking RGB photo of size x size pixels (8-bit PNG): scikit-image's astronaut, noisy."""
    from skimage import data
    img = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    img += np.random.default_rng(seed).normal(0, 15, img.shape).astype(np.float32)
    cv2.imwrite(path, np.clip(img, 0, 255).astype(np.uint8)[..., ::-1])


def random_weights(arch, path):
    import torch

    import promptir_basicsr  # noqa: F401  (compat fixes first: basicsr does not import without them)
    from basicsr.archs import build_network
    torch.manual_seed(0)
    net = build_network({'type': arch})
    torch.save({'params': net.state_dict()}, path)
    return sum(p.numel() for p in net.parameters())


def run_restore(args, inputs, out_dir, weights, backend, max_memory, env, time_limit=None):
    """(peak resident bytes, wall s, CPU s, loop s, tile overhead, tile plan, output) of one `basicsr restore`.

    ``time_limit``: seconds after which the run is stopped; then the peak is that of the part that ran (the plan
    is made and the image buffers allocated before the first tile, so the first tiles reach the run's peak), and
    the loop time and overhead are None."""
    command = [sys.executable, '-m', 'promptir_basicsr', 'restore', '-i', inputs, '-o', out_dir, '--weights', weights,
               '--device', 'cpu', '--backend', backend, '--max-memory', max_memory]
    if args.threads:
        command += ['--threads', str(args.threads)]
    start = time.time()
    log_path = osp.join(osp.dirname(out_dir), osp.basename(out_dir) + '.log')
    with open(log_path, 'w') as log:
        proc = subprocess.Popen(command, env=dict(env, PYTHONUNBUFFERED='1'), stdout=log, stderr=subprocess.STDOUT)
        stopped = False
        while True:  # os.wait4 reaps the child and gives its own peak RSS (Linux: kilobytes); Popen.poll would reap
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time_limit and not stopped and time.time() - start > time_limit:
                proc.terminate()
                stopped = True
            time.sleep(1)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.time() - start
    with open(log_path) as log:
        output = log.read()
    plan = re.search(r'\d+x\d+: (\d+ tiles of \d+x\d+ px, \d+ per forward)', output)
    plan = plan.group(1) if plan else 'whole image'
    # ru_maxrss counts from the calibration's last reset of VmHWM; restore reports the whole life's peak (in the
    # plan line, and in its closing line)
    reported = [size_of(number, unit) for number, unit in re.findall(r'(?:peaked at|peak memory) ([0-9.]+) ([MG]iB)',
                                                                     output)]
    peak = max([usage.ru_maxrss * 1024] + reported)
    if stopped:
        return peak, seconds, usage.ru_utime + usage.ru_stime, None, None, plan, output
    if proc.returncode != 0:
        raise SystemExit(f'restore failed:\n{output[-3000:]}')
    closing = re.search(r'restored \d+ image\(s\), ([0-9.]+) megapixels in ([0-9.]+) s.*tile overhead ([0-9.]+)',
                        output)
    return (peak, seconds, usage.ru_utime + usage.ru_stime, float(closing.group(2)), float(closing.group(3)), plan,
            output)


def size_of(number, unit):
    return float(number) * (2**30 if unit == 'GiB' else 2**20)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--archs', nargs='+', default=list(ARCHS))
    parser.add_argument('--backends', nargs='+', default=['torch', 'onnxruntime'], choices=['torch', 'onnxruntime'])
    parser.add_argument('--size', type=int, default=4096, help='side of the large photo')
    parser.add_argument('--whole', type=int, default=512, help='side of the photo restored whole (the reference)')
    parser.add_argument('--rounds', type=int, default=3, help='copies of the whole-image photo restored')
    parser.add_argument('--max-memory', default='4G', help="restore's --max-memory for the large photo")
    parser.add_argument('--threads', type=int, default=None, help="CPU threads (default: the libraries')")
    parser.add_argument('--time-limit', type=float, default=None, metavar='SECONDS',
                        help='stop the large photo after this long: its peak memory and tile plan, no time')
    parser.add_argument('--skip-whole', action='store_true', help='no whole-image runs (peak memory only)')
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''),
                   XDG_CACHE_HOME=osp.join(tmp, 'cache'))
        large = osp.join(tmp, f'photo_{args.size}.png')
        make_photo(args.size, large)
        warm = osp.join(tmp, 'warm.png')
        make_photo(64, warm)
        small = osp.join(tmp, 'small')
        os.makedirs(small)
        for i in range(args.rounds):
            make_photo(args.whole, osp.join(small, f'photo_{args.whole}_{i}.png'), seed=i)
        for arch in args.archs:
            weights = osp.join(tmp, f'{arch}_random.pth')
            parameters = random_weights(arch, weights)
            for backend in args.backends:
                if backend == 'onnxruntime':  # export once, outside the measured runs (its own peak is not theirs)
                    run_restore(args, warm, osp.join(tmp, 'warm'), weights, backend, '64G', env)
                whole = None
                if not args.skip_whole:
                    whole = run_restore(args, small, osp.join(tmp, f'out_{arch}_{backend}_small'), weights, backend,
                                        '64G', env)
                    print(f'{arch} {backend} {args.whole}x{args.whole} whole: {whole[3]:.1f} s for {args.rounds} '
                          f'(peak {whole[0] / 2**30:.2f} GiB)', flush=True)
                big = run_restore(args, large, osp.join(tmp, f'out_{arch}_{backend}'), weights, backend,
                                  args.max_memory, env, args.time_limit)
                print(f'{arch} {backend} {args.size}x{args.size}: peak {big[0] / 2**30:.2f} GiB, {big[1]:.0f} s '
                      f'wall, {big[2]:.0f} s CPU, loop {big[3] or 0:.0f} s, {big[5]}, overhead {big[4] or 0:.2f}'
                      + (' (stopped at --time-limit)' if big[3] is None else ''), flush=True)
                rows.append((arch, parameters, backend, big, whole))

    import torch
    versions = f'torch {torch.__version__}'
    try:
        import onnxruntime
        versions += f', onnxruntime {onnxruntime.__version__}'
    except ImportError:
        pass
    print(f'\nbasicsr restore --max-memory {args.max_memory}, full-size networks with random weights, CPU, threads '
          f'{args.threads or "default"}, {versions}; {args.size}x{args.size} photo vs {args.rounds} x '
          f'{args.whole}x{args.whole} restored whole\n')
    print(f'| network | backend | {args.size}² peak memory | {args.size}² wall / CPU time | tiles picked | '
          f'tile overhead | s/MP tiled | s/MP whole {args.whole}² | ratio |')
    print('|---|---|:---:|:---:|:---:|:---:|:---:|:---:|:---:|')
    def number(value, digits=0):
        return '-' if value is None else f'{value:.{digits}f}'

    for arch, parameters, backend, big, whole in rows:
        per_mp_big = None if big[3] is None else big[3] / (args.size ** 2 / 1e6)
        per_mp_whole = None if whole is None else whole[3] / (args.rounds * args.whole ** 2 / 1e6)
        ratio = per_mp_big / per_mp_whole if per_mp_big and per_mp_whole else None
        times = f'{big[1] / 60:.1f} / {big[2] / 60:.1f} min' + (' (stopped)' if big[3] is None else '')
        print(f'| {arch} ({parameters / 1e6:.1f} M) | {backend} | {big[0] / 2**30:.2f} GiB | {times} | {big[5]} | '
              f'{number(big[4], 2)} | {number(per_mp_big)} | {number(per_mp_whole)} | {number(ratio, 2)} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())

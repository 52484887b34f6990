"""CPU time of `basicsr restore`'s network call: onnxruntime (an ONNX export) against torch eager.

Both run through the same :class:`~promptir_basicsr.inference.Restorer` (restore's padding and tiles), on
the same photo, with the same number of threads; rounds alternate between the two, so a change in the
machine's load during the run affects both alike. The table gives the best and median seconds of each,
their ratio, and the largest difference between their outputs.

    python scripts/benchmark_onnx.py                                  # full-size PromptIR, 256x256, 1 and 2 threads
    python scripts/benchmark_onnx.py --arch Restormer --size 512 --tile-size 256 --threads 2 --rounds 3
    python scripts/benchmark_onnx.py --arch MoCEIR --threads 1 --rounds 3

The networks are the full-size official configurations (the default options, with the architecture's
``export_options``: MoCE-IR without routing noise, as `restore --backend onnxruntime` exports it) with random
weights: the time does not depend on the values. The export's own time (once per weights in `restore`) is printed
too. Not a test: timings depend on the machine and its load.
"""
import argparse
import statistics
import time

import cv2
import numpy as np
import torch

import promptir_basicsr  # noqa: F401  (compat fixes and registrations)
from basicsr.archs import build_network
from promptir_basicsr.archs.arch_api import declaration
from promptir_basicsr.inference import Restorer
from promptir_basicsr.utils.images import to_tensor
from promptir_basicsr.interop.export import onnx_bytes
from promptir_basicsr.interop.onnx_runtime import OnnxNetwork


def photo(size):
    """scikit-image's astronaut at size x size with noise, (1, 3, H, W) in [0, 1]."""
    from skimage import data
    img = cv2.resize(data.astronaut(), (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    img += np.random.default_rng(0).normal(0, 25 / 255, img.shape).astype(np.float32)
    return to_tensor(np.clip(img, 0, 1))


def time_alternating(runners, x, rounds):
    """Seconds per call of each runner, rounds alternating between them, after one warm-up call each."""
    outputs = [run(x) for run in runners]
    seconds = [[] for _ in runners]
    for _ in range(rounds):
        for i, run in enumerate(runners):
            start = time.perf_counter()
            run(x)
            seconds[i].append(time.perf_counter() - start)
    return seconds, outputs


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', default='PromptIR', choices=['PromptIR', 'Restormer', 'AirNet', 'AdaIR', 'MoCEIR',
                                                              'BioIR'])
    parser.add_argument('--size', type=int, default=256, help='photo side in pixels')
    parser.add_argument('--tile-size', type=int, default=0, help="restore's --tile-size (0: the whole image)")
    parser.add_argument('--threads', type=int, nargs='+', default=[1, 2], help='thread counts to compare at')
    parser.add_argument('--rounds', type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    network_opt = {'type': args.arch, **declaration(args.arch, 'export_options')}
    net = build_network(dict(network_opt)).eval()
    start = time.perf_counter()
    model, _ = onnx_bytes(net, network_opt, log=lambda *_: None)
    export_seconds = time.perf_counter() - start
    x = photo(args.size)
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        eager = Restorer(net, 'cpu', tile_size=args.tile_size or None)
        ort = Restorer(OnnxNetwork(model, 'cpu', threads=threads), 'cpu', tile_size=args.tile_size or None)
        (eager_s, ort_s), (eager_out, ort_out) = time_alternating([eager, ort], x, args.rounds)
        rows.append((threads, eager_s, ort_s, float((eager_out - ort_out).abs().max())))
        print(f'{threads} thread(s): torch {min(eager_s):.2f} s, onnxruntime {min(ort_s):.2f} s', flush=True)

    import onnxruntime
    print(f'\n{args.arch} (full size, random weights), {args.size}x{args.size}, '
          f'{f"tiles {args.tile_size}" if args.tile_size else "whole image"}, CPU, torch {torch.__version__}, '
          f'onnxruntime {onnxruntime.__version__}, best / median of {args.rounds} alternating rounds; the export (once) '
          f'took {export_seconds:.0f} s\n')
    print('| threads | torch eager (best / median) | onnxruntime (best / median) | torch / onnxruntime, best | median '
          '| max abs difference |')
    print('|:---:|:---:|:---:|:---:|:---:|:---:|')
    for threads, eager_s, ort_s, diff in rows:
        print(f'| {threads} | {min(eager_s):.2f} / {statistics.median(eager_s):.2f} s | {min(ort_s):.2f} / '
              f'{statistics.median(ort_s):.2f} s | {min(eager_s) / min(ort_s):.2f}x | '
              f'{statistics.median(eager_s) / statistics.median(ort_s):.2f}x | {diff:.1e} |')


if __name__ == '__main__':
    main()

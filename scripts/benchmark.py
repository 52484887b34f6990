#!/usr/bin/env python
"""Speed and memory of our networks (PromptIR, Restormer, AirNet, AdaIR, MoCE-IR, BioIR) against their official
formulations.

One table per architecture and image size: parameters, GMACs, forward latency (batch 1, inference),
training-step time (forward + backward + AdamW, batch ``--batch``), peak memory of a training step,
and each variant's speed-up over the reference: the official formulation
(``tests/official_formulation.py`` and ``tests/official/``, independent re-statements) carrying the same weights.
Variants alternate within every round and the best of ``--repeats`` rounds counts, so a change of
machine load during the run hits all of them alike. Training memory (``--memory``) is the peak RSS
of a child process that builds one variant and runs two training steps, minus the child's RSS before
building it (on CUDA: the peak of allocated device memory).

    python scripts/benchmark.py                          # CPU, 2 threads: every arch at 128 and 256
    python scripts/benchmark.py --archs PromptIR --sizes 128 256 512 --memory
    python scripts/benchmark.py --archs PromptIR --sizes 128 --compile   # + torch.compile (minutes on a CPU)
    python scripts/benchmark.py --checkpoint             # grad_checkpoint: PromptIR step and memory, batch 8
    python scripts/benchmark.py --data                   # AllInOneDataset samples/s next to the step's rate
    python scripts/benchmark.py --device cuda --batch 8  # GPU rows: fp32, bf16, bf16 + channels_last + compile
    python scripts/benchmark.py --quick                  # tiny networks, one round: what the test suite runs

Training steps run up to ``--max-step-size`` (256): at 512 the reference's CPU step takes minutes and
most of this machine's memory. Not a test: timings depend on the machine and its load, so every table
is headed by the load average (``/proc/loadavg``) at its start.
"""
import argparse
import copy
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# The reference formulation lives with the tests (the golden-output and equality tests use it too);
# it shares no code with the package, so it is imported from there rather than shipped.
sys.path.insert(0, osp.join(REPO, 'tests'))
sys.path.insert(0, REPO)

ARCHS = ('PromptIR', 'Restormer', 'AirNet', 'AdaIR', 'MoCEIR', 'BioIR')
TINY = {
    'PromptIR': dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 4, 8], prompt_len=3,
                     prompt_dims=[8, 16, 24], prompt_sizes=[8, 4, 2]),
    'Restormer': dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 4, 8]),
    'AirNet': dict(n_feats=8, n_groups=2, n_blocks=1, encoder_widths=[8, 8], moco_dim=8, queue_size=8),
    'AdaIR': dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 2, 4, 8]),
    'MoCEIR': dict(dim=8, num_blocks=[1, 1, 1, 1], num_dec_blocks=[1, 1, 1], num_refinement_blocks=1,
                   heads=[1, 2, 4, 8]),
    'BioIR': dict(dim=8, num_blocks=[1, 1, 1], num_refinement_blocks=1),
}
CUDA_VARIANTS = ('ours fp32', 'ours bf16', 'ours bf16 + channels_last + compile')


def load_average():
    try:
        with open('/proc/loadavg', encoding='utf-8') as f:
            return ' '.join(f.read().split()[:3])
    except OSError:
        return 'unknown'


# ---- networks and variants -------------------------------------------------------------------
def build_pair(arch, options, device):
    """(ours, reference) with the same weights, on ``device``, in training mode."""
    import torch
    from basicsr.utils.registry import ARCH_REGISTRY

    from official_formulation import reference_like
    torch.manual_seed(0)
    ours = ARCH_REGISTRY.get(arch)(**options)
    ref = reference_like(ours, arch, **options)
    return ours.to(device).train(), ref.to(device).train()


class Variant:
    """One way of running a network: its own copy, optimizer, autocast dtype and input layout."""

    def __init__(self, name, net, device, amp=None, channels_last=False, compile_options=None, grad_checkpoint=False):
        import torch

        from promptir_basicsr.utils import acceleration
        self.name, self.device, self.amp, self.channels_last = name, device, amp, channels_last
        self.net = net
        if channels_last:
            acceleration.to_channels_last(net)
        if grad_checkpoint:
            net.set_grad_checkpointing(True)
        if compile_options is not None:
            acceleration.compile_network(net, compile_options)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=1e-4)

    def _input(self, x):
        import torch
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _autocast(self):
        from promptir_basicsr.utils import acceleration
        return acceleration.autocast(self.device, self.amp)

    def forward(self, x):
        import torch
        self.net.eval()
        with torch.inference_mode(), self._autocast():
            out = self.net(self._input(x))
        return out[0] if isinstance(out, tuple) else out

    def train_step(self, x, target):
        """One step: L1 (+ AirNet's contrastive loss on its logits, weight 0.1) -> backward -> AdamW."""
        import torch.nn.functional as F
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            out = self.net(self._input(x), self._input(x.flip(-1))) if is_airnet(self.net) else self.net(self._input(x))
            if isinstance(out, tuple):  # AirNet: (restored, logits, labels)
                loss = F.l1_loss(out[0].float(), target) + 0.1 * F.cross_entropy(out[1].float(), out[2])
            else:
                loss = F.l1_loss(out.float(), target)
        loss.backward()
        self.optimizer.step()
        return loss.detach()


def is_airnet(net):
    return type(net).__name__ == 'AirNet'


def make_variants(arch, options, device, names, compile_options=None, checkpoint=False):
    """The named variants of ``arch``: 'reference', 'ours', 'ours + compile', 'ours + grad_checkpoint',
    and the CUDA ones of :data:`CUDA_VARIANTS`. Each gets its own copy of the same weights."""
    import torch
    ours, ref = build_pair(arch, options, device)
    specs = {
        'reference': dict(net=ref),
        'ours': dict(net=ours),
        'ours + compile': dict(compile_options=compile_options or {}),
        'ours + grad_checkpoint': dict(grad_checkpoint=True),
        'ours fp32': dict(),
        'ours bf16': dict(amp=torch.bfloat16),
        'ours bf16 + channels_last + compile': dict(amp=torch.bfloat16, channels_last=True,
                                                    compile_options=compile_options or {}),
    }
    variants = []
    for name in names:
        spec = dict(specs[name])
        net = spec.pop('net', None)
        net = copy.deepcopy(ours) if net is None else net
        variants.append(Variant(name, net, device, **spec))
    return variants


# ---- timing ------------------------------------------------------------------------------------
def synchronize(device):
    import torch
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def best_times(variants, run, repeats, device):
    """Best-of-``repeats`` seconds of ``run(variant)`` per variant; variants alternate in each round,
    after one untimed warm-up round (allocator, oneDNN primitives, compilation)."""
    for v in variants:
        run(v)
    synchronize(device)
    best = {v.name: float('inf') for v in variants}
    for _ in range(repeats):
        for v in variants:
            synchronize(device)
            start = time.perf_counter()
            run(v)
            synchronize(device)
            best[v.name] = min(best[v.name], time.perf_counter() - start)
    return best


# ---- peak memory -------------------------------------------------------------------------------
def child_peak_memory(arch, options, size, batch, variant, threads):
    """Peak training memory (MiB) of a fresh process that builds ``variant`` and runs two training
    steps: its peak RSS minus its RSS before building anything (the interpreter, torch and basicsr,
    the same for every variant), so weights, gradients, optimizer state and activations count."""
    job = dict(arch=arch, options=options, size=size, batch=batch, variant=variant, threads=threads)
    proc = subprocess.run([sys.executable, osp.abspath(__file__), '--child', json.dumps(job)], capture_output=True,
                          text=True, check=False, cwd=REPO)
    if proc.returncode != 0:
        return f'failed ({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode})'
    return json.loads(proc.stdout.strip().splitlines()[-1])['training_mib']


def current_rss_mib(field='VmRSS'):
    """This process' resident memory (``VmRSS``) or its peak (``VmHWM``) in MiB.

    The peak is read from ``VmHWM``, the high-water mark of this process' own address space, which
    starts afresh at exec; ``getrusage(RUSAGE_SELF).ru_maxrss`` does not: Linux carries the parent's
    resident memory at fork into the child's ``ru_maxrss``, so a child started by a parent holding
    8 GiB reported at least 8 GiB whatever it did.
    """
    with open('/proc/self/status', encoding='utf-8') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f'no {field} in /proc/self/status')


def run_child(job):
    import torch
    torch.set_num_threads(job['threads'])
    baseline = current_rss_mib()
    (variant, ) = make_variants(job['arch'], job['options'], 'cpu', [job['variant']])
    x, target = inputs(job['batch'], job['size'], 'cpu')
    for _ in range(2):
        variant.train_step(x, target)
    peak = current_rss_mib('VmHWM')
    print(json.dumps({'training_mib': round(peak - baseline), 'baseline_mib': round(baseline)}))


def cuda_peak_memory(variant, x, target):
    import torch
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    variant.train_step(x, target)
    torch.cuda.synchronize()
    return round(torch.cuda.max_memory_allocated() / 2**20)


# ---- tables ------------------------------------------------------------------------------------
def inputs(batch, size, device):
    import torch
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=gen)
    return x.to(device), (x * 0.9).to(device)


def fmt_ratio(ref, value):
    return f'{ref / value:.2f}x' if isinstance(value, float) and isinstance(ref, float) else '-'


def fmt_seconds(value):
    return f'{value:.4g}' if isinstance(value, float) else '-'


def arch_table(arch, size, args, device):
    """Time (and measure) every variant of ``arch`` at ``size``; returns the markdown table."""
    import torch

    from promptir_basicsr.archs.restormer_blocks import exact_widths
    from promptir_basicsr.archs.complexity import count_macs, count_parameters
    options = TINY[arch] if args.quick else {}
    if device == 'cpu':
        names = ['reference', 'ours'] + ['ours bf16'] * args.bf16 + ['ours + compile'] * args.compile
    else:
        names = ['reference'] + list(CUDA_VARIANTS)
    load = load_average()
    with_step = size <= args.max_step_size
    memory = {}
    if args.memory and with_step and device == 'cpu':
        # first, while this process holds no network: children and parent share the machine's memory
        memory = {name: child_peak_memory(arch, options, size, args.batch, name, args.threads) for name in names}
    variants = make_variants(arch, options, device, names, compile_options=args.compile_options)
    ours = variants[1].net
    params = count_parameters(ours)
    with exact_widths():
        macs = count_macs(ours, (1, 3, size, size))

    x1, _ = inputs(1, size, device)
    fwd = best_times(variants, lambda v: v.forward(x1), args.repeats, device)
    step = {}
    if with_step:
        xb, target = inputs(args.batch, size, device)
        step = best_times(variants, lambda v: v.train_step(xb, target), args.repeats, device)
        if args.memory and device == 'cuda':
            memory = {v.name: cuda_peak_memory(v, xb, target) for v in variants}
    del variants

    where = f'{torch.get_num_threads()} threads' if device == 'cpu' else torch.cuda.get_device_name()
    memory_label = 'train memory (MiB)'
    lines = [f'#### {arch}{" (tiny)" if args.quick else ""}, {size}x{size}: {device} ({where}), forward batch 1, '
             f'train step batch {args.batch}, best of {args.repeats}; load average at start: {load}', '',
             f'| variant | params | GMACs | forward (s) | forward speed-up | train step (s) | step speed-up | '
             f'{memory_label} |', '|---|---|---|---|---|---|---|---|']
    for name in names:
        lines.append(f'| {name} | {params / 1e6:.2f} M | {macs / 1e9:.2f} | {fmt_seconds(fwd[name])} | '
                     f'{fmt_ratio(fwd["reference"], fwd[name])} | {fmt_seconds(step.get(name))} | '
                     f'{fmt_ratio(step.get("reference"), step.get(name))} | {memory.get(name, "-")} |')
    return '\n'.join(lines)


def checkpoint_table(args):
    """grad_checkpoint: PromptIR training step with and without, time and training memory (children)."""
    arch = 'PromptIR'
    options = TINY[arch] if args.quick else {}
    size, batch = args.checkpoint_size, args.checkpoint_batch
    load = load_average()
    names = ['ours', 'ours + grad_checkpoint']
    memory = {name: child_peak_memory(arch, options, size, batch, name, args.threads) for name in names}
    variants = make_variants(arch, options, 'cpu', names)
    x, target = inputs(batch, size, 'cpu')
    step = best_times(variants, lambda v: v.train_step(x, target), args.repeats, 'cpu')
    del variants
    lines = [f'#### grad_checkpoint: {arch}{" (tiny)" if args.quick else ""}, {size}x{size}, batch {batch}, '
             f'cpu ({args.threads} threads), best of {args.repeats}; load average at start: {load}', '',
             '| variant | train step (s) | step time vs unchecked | train memory (MiB) | memory vs unchecked |',
             '|---|---|---|---|---|']
    for name in names:
        mem = memory[name]
        mem_ratio = f'{mem / memory["ours"]:.2f}' if isinstance(mem, int) and isinstance(memory['ours'], int) else '-'
        lines.append(f'| {name} | {fmt_seconds(step[name])} | {step[name] / step["ours"]:.2f} | {mem} | {mem_ratio} |')
    return '\n'.join(lines)


# ---- data pipeline -----------------------------------------------------------------------------
def write_images(folder, count, height, width, seed):
    """``count`` smooth random 8-bit PNGs of ``height`` x ``width`` (a photo's decode cost)."""
    import cv2
    import numpy as np
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
        img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
        noise = rng.integers(0, 12, img.shape, dtype=np.uint8)
        cv2.imwrite(osp.join(folder, f'img{i:03d}.png'), cv2.add(img, noise))


def data_table(args, step_rate):
    """AllInOneDataset samples/s from folders and LMDB with 1 and 2 DataLoader workers."""
    import torch
    from basicsr.data import build_dataset

    from promptir_basicsr.data.lmdb_tools import write_lmdb
    count, (height, width) = (8, (160, 160)) if args.quick else (32, (321, 481))
    gt_size = 32 if args.quick else 128
    batch, batches = (2, 2) if args.quick else (8, 12)
    load = load_average()
    rows = []
    with tempfile.TemporaryDirectory() as root:
        folders = {name: osp.join(root, name) for name in ('clean', 'rain_gt', 'rain_lq')}
        write_images(folders['clean'], count, height, width, seed=0)
        write_images(folders['rain_gt'], count, height, width, seed=1)
        write_images(folders['rain_lq'], count, height, width, seed=2)
        names = sorted(os.listdir(folders['clean']))
        for name, folder in folders.items():
            write_lmdb(folder, names, folder + '.lmdb')
        for backend in ('disk', 'lmdb'):
            suffix = '' if backend == 'disk' else '.lmdb'

            def source(name, **extra):
                return dict(name=name, io_backend={'type': backend}, **extra)

            opt = {'name': 'bench', 'type': 'AllInOneDataset', 'phase': 'train', 'gt_size': gt_size,
                   'sources': [source('noise', dataroot_gt=folders['clean'] + suffix,
                                      degradation=[{'type': 'gaussian_noise_uint8', 'sigma': 25}]),
                               source('rain', dataroot_gt=folders['rain_gt'] + suffix,
                                      dataroot_lq=folders['rain_lq'] + suffix)]}
            dataset = build_dataset(opt)
            for workers in (1, 2):
                loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                                     persistent_workers=False, drop_last=True)
                it = iter(_cycle(loader))
                next(it)  # worker start-up is not throughput
                start = time.perf_counter()
                for _ in range(batches):
                    next(it)
                rate = batch * batches / (time.perf_counter() - start)
                rows.append((backend, workers, rate))
    lines = [f'#### AllInOneDataset, {gt_size}x{gt_size} crops of {height}x{width} PNGs (noise on the fly + a '
             f'paired source), batch {batch}; load average at start: {load}', '',
             '| images from | workers | samples/s | vs the training step\'s consumption |', '|---|---|---|---|']
    for backend, workers, rate in rows:
        lines.append(f'| {"folders" if backend == "disk" else "LMDB"} | {workers} | {rate:.1f} | '
                     f'{rate / step_rate:.0f}x |')
    lines += ['', f'Training step consumption (PromptIR{" tiny" if args.quick else ""}, batch {args.batch}, '
              f'{gt_size}x{gt_size}, this CPU): {step_rate:.2f} samples/s.']
    return '\n'.join(lines)


def _cycle(loader):
    while True:
        yield from loader


def step_rate(args):
    """Samples per second one training step of our PromptIR consumes at the data table's patch size."""
    options = TINY['PromptIR'] if args.quick else {}
    (variant, ) = make_variants('PromptIR', options, 'cpu', ['ours'])
    size = 32 if args.quick else 128
    x, target = inputs(args.batch, size, 'cpu')
    best = best_times([variant], lambda v: v.train_step(x, target), max(1, args.repeats // 2), 'cpu')['ours']
    return args.batch / best


# ---- main --------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--archs', nargs='+', default=list(ARCHS), choices=ARCHS)
    parser.add_argument('--sizes', nargs='+', type=int, default=[128, 256], help='image sizes (default 128 256)')
    parser.add_argument('--batch', type=int, default=2, help='training-step batch (default 2)')
    parser.add_argument('--repeats', type=int, default=3, help='timed rounds; the best counts (default 3)')
    parser.add_argument('--threads', type=int, default=2, help='torch CPU threads (default 2)')
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--max-step-size', type=int, default=256, help='largest size with a training step')
    parser.add_argument('--memory', action='store_true', help='peak training memory per variant')
    parser.add_argument('--compile', action='store_true', help='CPU: add an "ours + compile" row (torch.compile)')
    parser.add_argument('--bf16', action='store_true', help='CPU: add an "ours bf16" row (amp: bf16)')
    parser.add_argument('--compile-mode', default=None, help='torch.compile mode (default: torch\'s)')
    parser.add_argument('--checkpoint', action='store_true', help='grad_checkpoint table (PromptIR)')
    parser.add_argument('--checkpoint-batch', type=int, default=8)
    parser.add_argument('--checkpoint-size', type=int, default=128)
    parser.add_argument('--data', action='store_true', help='data pipeline table (AllInOneDataset samples/s)')
    parser.add_argument('--no-arch-tables', action='store_true', help='only the --checkpoint / --data tables')
    parser.add_argument('--quick', action='store_true', help='tiny networks at 32x32, one round (the test suite)')
    parser.add_argument('--child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.max_step_size = [32], 1, 32
        args.checkpoint_size, args.checkpoint_batch = 32, 2
    args.compile_options = {'mode': args.compile_mode} if args.compile_mode else {}
    return args, parser


def main(argv=None):
    args, parser = parse_args(argv)
    import torch

    import promptir_basicsr  # noqa: F401  (registrations, compat)
    torch.set_num_threads(args.threads)
    if args.child:
        run_child(json.loads(args.child))
        return 0
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.exit(2, 'benchmark: error: --device cuda needs a CUDA device, and torch.cuda.is_available() is False '
                    'on this machine (run on a GPU machine, or leave --device out for the CPU tables)\n')
    device = args.device
    tables = []
    if not args.no_arch_tables:
        for arch in args.archs:
            for size in args.sizes:
                tables.append(arch_table(arch, size, args, device))
                print(tables[-1] + '\n', flush=True)
    if args.checkpoint:
        tables.append(checkpoint_table(args))
        print(tables[-1] + '\n', flush=True)
    if args.data:
        tables.append(data_table(args, step_rate(args)))
        print(tables[-1] + '\n', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())

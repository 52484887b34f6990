#!/usr/bin/env python
"""DDP training-step time of PromptIR with and without ``find_unused_parameters``, 2 CPU processes (gloo).

    python scripts/benchmark_ddp.py [--steps 15] [--rounds 3] [--batch 4] [--size 64]

The network is the PromptIR demo's (``options/demo/promptir_demo.yml``, network_g). Variants:

- ``frozen, find_unused false``: this package (the six never-used official modules have
  ``requires_grad=False``, so DDP's reducer does not wait for them);
- ``frozen, find_unused true``: the same network with DDP's per-step search for unused parameters;
- ``trainable, find_unused true``: the unused modules trainable, as before, which needs the search.

One step = forward, L1 loss, backward (gradients averaged by DDP), AdamW step; batch of ``--batch`` random
``--size`` px crops per process, one torch thread per process. The variants alternate within each round;
the table gives the median step time of rank 0 over all rounds and the ratio to the first variant.
"""
import argparse
import os
import os.path as osp
import socket
import statistics
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
VARIANTS = (('frozen, find_unused false', True, False), ('frozen, find_unused true', True, True),
            ('trainable, find_unused true', False, True))


def _network_options():
    from promptir_basicsr.options.files import read_option_file
    network = dict(read_option_file(osp.join(REPO, 'options', 'demo', 'promptir_demo.yml'))['network_g'])
    network.pop('type')
    return network


def _worker(rank, world, port, args, queue):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    import promptir_basicsr  # noqa: F401
    from promptir_basicsr.archs.promptir_arch import UNUSED_OFFICIAL_MODULES, PromptIR
    torch.set_num_threads(1)
    dist.init_process_group('gloo', rank=rank, world_size=world)
    network = _network_options()
    times = {name: [] for name, _, _ in VARIANTS}
    for _ in range(args.rounds):
        for name, frozen, find_unused in VARIANTS:
            torch.manual_seed(0)
            net = PromptIR(**network)
            if not frozen:
                for module in UNUSED_OFFICIAL_MODULES:
                    getattr(net, module).requires_grad_(True)
            model = DistributedDataParallel(net, device_ids=None, find_unused_parameters=find_unused)
            optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-4)
            generator = torch.Generator().manual_seed(rank)
            batches = [(torch.rand(args.batch, 3, args.size, args.size, generator=generator),
                        torch.rand(args.batch, 3, args.size, args.size, generator=generator)) for _ in range(4)]
            for step in range(args.warmup + args.steps):
                lq, gt = batches[step % len(batches)]
                if step == args.warmup:
                    dist.barrier()
                    start = time.perf_counter()
                optimizer.zero_grad(set_to_none=True)
                torch.nn.functional.l1_loss(model(lq), gt).backward()
                optimizer.step()
            dist.barrier()
            times[name].append((time.perf_counter() - start) / args.steps)
    if rank == 0:
        queue.put(times)
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=15, help='timed steps per variant and round')
    parser.add_argument('--warmup', type=int, default=3, help='untimed steps before each timing')
    parser.add_argument('--rounds', type=int, default=3, help='rounds (the variants alternate in each)')
    parser.add_argument('--batch', type=int, default=4, help='crops per process (the demo: 4)')
    parser.add_argument('--size', type=int, default=64, help='crop size (the demo: 64)')
    args = parser.parse_args(argv)
    sys.path.insert(0, REPO)
    import torch.multiprocessing as mp
    context = mp.get_context('spawn')
    queue = context.SimpleQueue()
    mp.start_processes(_worker, args=(2, _free_port(), args, queue), nprocs=2, start_method='spawn')
    times = queue.get()
    base = statistics.median(times[VARIANTS[0][0]])
    print(f'PromptIR demo network, DDP over 2 CPU processes (gloo), 1 thread each, batch {args.batch} x {args.size} px '
          f'per process, {args.rounds} rounds x {args.steps} steps\n')
    print('| variant | step time (median of rounds) | ratio |')
    print('|---|---:|---:|')
    for name, _, _ in VARIANTS:
        median = statistics.median(times[name])
        print(f'| {name} | {median * 1000:.0f} ms | {median / base:.2f}x |')
    return 0


if __name__ == '__main__':
    sys.exit(main())

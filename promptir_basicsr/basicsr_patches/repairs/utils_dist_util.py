"""``basicsr.utils.dist_util``: starting distributed training on machines without CUDA (gloo), and with the right
device and backend on machines with it."""
import multiprocessing
import os
import subprocess

import torch
import torch.distributed as dist

from ..marks import is_ours, ours


def _backend(requested):
    return requested if torch.cuda.is_available() else 'gloo'


def _fork_loader_workers_without_cuda():
    # basicsr's init_dist sets the 'spawn' start method (for CUDA's sake): every DataLoader worker, restarted each
    # epoch, then re-imports torch, basicsr and this package (measured: 9-12 s before the first batch of each
    # epoch, 2 busy cores). Without CUDA nothing makes fork unsafe (Linux's default).
    if not torch.cuda.is_available() and 'fork' in multiprocessing.get_all_start_methods():
        torch.multiprocessing.set_start_method('fork', force=True)


def fix_cpu_distributed_init():
    """basicsr's ``_init_dist_pytorch``/``_init_dist_slurm`` compute ``rank % cuda.device_count()`` (a division by
    zero on the CPU) and always use nccl. Here: nccl with the rank's GPU when CUDA is available, gloo otherwise.
    Without CUDA, data loader workers are forked again (see :func:`_fork_loader_workers_without_cuda`)."""
    from basicsr.utils import dist_util

    if is_ours(dist_util._init_dist_pytorch):
        return

    def _init_dist_pytorch(backend, **kwargs):
        if torch.cuda.is_available():
            local_rank = int(os.environ.get('LOCAL_RANK', os.environ['RANK']))
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        _fork_loader_workers_without_cuda()
        dist.init_process_group(backend=_backend(backend), **kwargs)

    original_slurm = dist_util._init_dist_slurm

    def _init_dist_slurm(backend, port=None):
        if torch.cuda.is_available():
            return original_slurm(backend, port)
        # Same environment as basicsr's, without the CUDA device selection.
        if port is not None:
            os.environ['MASTER_PORT'] = str(port)
        os.environ.setdefault('MASTER_PORT', '29500')
        node_list = os.environ['SLURM_NODELIST']
        os.environ['MASTER_ADDR'] = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
        os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
        os.environ['RANK'] = os.environ['SLURM_PROCID']
        os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
        _fork_loader_workers_without_cuda()
        dist.init_process_group(backend='gloo')

    dist_util._init_dist_pytorch = ours(_init_dist_pytorch)
    dist_util._init_dist_slurm = ours(_init_dist_slurm)


def apply():
    fix_cpu_distributed_init()

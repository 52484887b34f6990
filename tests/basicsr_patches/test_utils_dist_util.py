"""basicsr_patches/repairs/utils_dist_util.py and models_base_model.py: distributed training on the CPU. Each test fails without its patch."""
import os
import socket

import torch


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_cpu_distributed_init_and_ddp_wrap(monkeypatch):
    import torch.distributed as dist
    from basicsr.models.base_model import BaseModel
    from basicsr.utils.dist_util import init_dist
    monkeypatch.setenv('RANK', '0')
    monkeypatch.setenv('LOCAL_RANK', '0')
    monkeypatch.setenv('WORLD_SIZE', '1')
    monkeypatch.setenv('MASTER_ADDR', '127.0.0.1')
    monkeypatch.setenv('MASTER_PORT', str(_free_port()))
    start_method = torch.multiprocessing.get_start_method(allow_none=True)
    init_dist('pytorch')  # basicsr: rank % cuda.device_count() -> ZeroDivisionError, and nccl
    try:
        assert dist.get_backend() == 'gloo'
        if not torch.cuda.is_available():  # basicsr set 'spawn': loader workers re-importing everything each epoch
            assert torch.multiprocessing.get_start_method() == 'fork'
        model = BaseModel({'num_gpu': 0, 'is_train': True, 'dist': True})
        net = model.model_to_device(torch.nn.Conv2d(3, 3, 3))
        assert isinstance(net, torch.nn.parallel.DistributedDataParallel)
        assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 6, 6)
    finally:
        dist.destroy_process_group()
        torch.multiprocessing.set_start_method(start_method, force=True)


def _slurm_rank(rank, port, bin_dir, queue):
    """One slurm task: only SLURM_* variables (as srun sets them) and a stand-in `scontrol` on PATH."""
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        os.environ.pop(key, None)
    os.environ.update(SLURM_PROCID=str(rank), SLURM_NTASKS='2', SLURM_LOCALID=str(rank), SLURM_NODELIST='node[7-8]',
                      PATH=f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    import torch.distributed as dist

    import promptir_basicsr  # noqa: F401,I001  (first: basicsr patched as it is imported)
    from basicsr.utils.dist_util import get_dist_info, init_dist  # noqa: I001
    init_dist('slurm', port=port)  # what --launcher slurm with dist_params.port does
    try:
        total = torch.tensor([float(rank + 1)])
        dist.all_reduce(total)
        queue.put((rank, get_dist_info(), dist.get_backend(), float(total), {
            k: os.environ[k] for k in ('MASTER_ADDR', 'MASTER_PORT', 'WORLD_SIZE', 'RANK', 'LOCAL_RANK')}))
    finally:
        dist.destroy_process_group()


def test_slurm_launcher_on_cpu_from_the_slurm_environment(tmp_path):
    """Guards the CPU slurm path of basicsr's init_dist: rank, world size and local rank come from SLURM_PROCID,
    SLURM_NTASKS and SLURM_LOCALID, the master address from `scontrol show hostname <nodelist>`, the port from
    dist_params.port; gloo, since there is no CUDA. Two tasks really meet in one process group."""
    import multiprocessing as mp
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    scontrol = bin_dir / 'scontrol'
    scontrol.write_text('#!/bin/sh\n[ "$1 $2 $3" = "show hostname node[7-8]" ] && printf "127.0.0.1\\nnode8\\n"\n')
    scontrol.chmod(0o755)
    port = _free_port()
    ctx = mp.get_context('spawn')
    queue = ctx.Queue()
    procs = [ctx.Process(target=_slurm_rank, args=(rank, port, str(bin_dir), queue)) for rank in (0, 1)]
    for proc in procs:
        proc.start()
    results = sorted(queue.get(timeout=300) for _ in procs)
    for proc in procs:
        proc.join(timeout=60)
    assert [proc.exitcode for proc in procs] == [0, 0]
    for rank, (dist_info, backend, total, env) in [(r[0], r[1:]) for r in results]:
        assert dist_info == (rank, 2) and backend == 'gloo' and total == 3.0  # ranks 1 + 2 summed
        assert env == {'MASTER_ADDR': '127.0.0.1', 'MASTER_PORT': str(port), 'WORLD_SIZE': '2', 'RANK': str(rank),
                       'LOCAL_RANK': str(rank)}

"""``basicsr.train``: resuming without CUDA and from the right folder, and training for the full ``total_iter``."""
import math
import os
import os.path as osp
import sys

import torch

from ...errors import UserError
from ...weights.files import load_checkpoint
from ..marks import is_ours, ours


def cpu_map_location():
    """Where loaded tensors go: the current CUDA device if there is one, else the CPU."""
    if torch.cuda.is_available():
        device_id = torch.cuda.current_device()
        return lambda storage, loc: storage.cuda(device_id)
    return 'cpu'


def newest_training_state(states_dir):
    """Path of the newest ``<iter>.state`` in ``states_dir``, or None.

    Only files named exactly ``<integer>.state`` count: checkpoints are written to a temporary
    name and renamed (see :func:`promptir_basicsr.utils.files.atomic_save`), so a kill during
    a save leaves no file that could be picked here.
    """
    if not osp.isdir(states_dir):
        return None
    iters = []
    for name in os.listdir(states_dir):
        stem, ext = osp.splitext(name)
        if ext == '.state' and stem.isdigit():
            iters.append(int(stem))
    return osp.join(states_dir, f'{max(iters)}.state') if iters else None


def fix_resume_state_loading():
    """Replace ``basicsr.train.load_resume_state`` (``train_pipeline`` looks it up as a global).

    Differs from basicsr's: it works without CUDA (basicsr calls ``torch.cuda.current_device()``
    unconditionally); the state is loaded with ``weights_only=True``; and when ``--auto_resume``
    finds no state it says so in one line, naming the folder it searched, instead of silently
    starting from iteration 0. That folder is ``opt['path']['training_states']``, i.e.
    ``experiments/<name>/training_states`` under the directory the command runs from (basicsr's
    root), so a run started elsewhere is not found.
    """
    import basicsr.train as basicsr_train
    from basicsr.utils import check_resume

    if is_ours(basicsr_train.load_resume_state):
        return

    def load_resume_state(opt):
        resume_state_path = None
        if opt['auto_resume']:
            resume_state_path = newest_training_state(opt['path']['training_states'])
            if resume_state_path is not None:
                opt['path']['resume_state'] = resume_state_path
            elif opt.get('rank', 0) == 0:
                print(f"--auto_resume: no training state in {opt['path']['training_states']}; starting from "
                      'iteration 0 (a run is continued from the directory it was started in).', file=sys.stderr,
                      flush=True)
        elif opt['path'].get('resume_state'):
            resume_state_path = opt['path']['resume_state']
        if resume_state_path is None:
            return None
        resume_state = load_checkpoint(resume_state_path, map_location=cpu_map_location())
        check_resume(opt, resume_state['iter'])
        return resume_state

    basicsr_train.load_resume_state = ours(load_resume_state)


def fix_epoch_count():
    """Train for the full ``total_iter``: count epochs from the loader's real length.

    ``train_pipeline`` loops ``for epoch in range(start, total_epochs + 1)`` with ``total_epochs``
    computed from ``ceil(samples / batch)`` iterations per epoch, but basicsr's train loader drops the
    last partial batch (``drop_last=True``): an epoch has ``floor(samples / batch)`` iterations, so a
    run could stop early (481 of 500 iterations seen). ``train_pipeline`` looks
    ``create_train_val_dataloader`` up as a global of ``basicsr.train``; wrap it there. A train set
    with fewer samples per process than one batch is an error (a ``UserError``) instead of a run that never
    trains; a batch larger than the train set (made to work by ``dataset_enlarge_ratio``) is a warning.
    """
    import basicsr.train as basicsr_train

    original = basicsr_train.create_train_val_dataloader
    if is_ours(original):
        return

    def create_train_val_dataloader(opt, logger):
        train_loader, train_sampler, val_loaders, total_epochs, total_iters = original(opt, logger)
        iters_per_epoch = len(train_loader)
        train_opt = opt['datasets']['train']
        batch = train_opt['batch_size_per_gpu'] * opt['world_size']
        if iters_per_epoch == 0:
            raise UserError(
                f"datasets:train: {len(train_sampler)} samples per process are fewer than batch_size_per_gpu "
                f"({train_opt['batch_size_per_gpu']}), so no full batch exists: lower "
                'batch_size_per_gpu, add images, or raise dataset_enlarge_ratio.')
        if batch > len(train_loader.dataset):
            logger.warning(f"datasets:train: a batch of {batch} samples (batch_size_per_gpu "
                           f"{train_opt['batch_size_per_gpu']} x {opt['world_size']} process(es)) is larger than the "
                           f'training set ({len(train_loader.dataset)} samples): every batch repeats samples.')
        real_epochs = math.ceil(total_iters / iters_per_epoch)
        if real_epochs != total_epochs:
            logger.info(f'Full batches per epoch: {iters_per_epoch} (the last partial batch is dropped); '
                        f'total epochs: {real_epochs}.')
        return train_loader, train_sampler, val_loaders, real_epochs, total_iters

    basicsr_train.create_train_val_dataloader = ours(create_train_val_dataloader)


def apply():
    fix_resume_state_loading()
    fix_epoch_count()

"""``basicsr.models.base_model``: checkpoints written atomically and read without running pickled code, any weights
file (official releases too) loaded as ``path: pretrain_network_g`` with a clear error when it does not fit, and
the final validation reported at ``total_iter``."""
import types

import torch

from basicsr.utils import get_root_logger

from ...archs.arch_api import declaration
from ...errors import CheckpointError
from ...utils.files import atomic_save
from ...weights.files import load_checkpoint, read_weights
from ...weights.state_dict import compare_state_dicts, extract_state_dict, format_differences
from ..marks import is_ours, ours


def fix_checkpoint_io():
    """Route basicsr's checkpoint reads and writes through :func:`~promptir_basicsr.utils.files.atomic_save` and
    :func:`~promptir_basicsr.weights.files.load_checkpoint`.

    basicsr's ``save_network``/``save_training_state`` write with ``torch.save`` in place: a kill
    during that write leaves a truncated ``.pth``/``.state`` that ``--auto_resume`` then picks.
    Its ``load_network`` calls ``torch.load`` and, on a bad file, fails with torch's long message.
    All three look ``torch`` up as a global of ``basicsr.models.base_model``: give that module a
    ``torch`` whose ``save`` is :func:`atomic_save` (temporary file, then rename) and whose ``load``
    is :func:`load_checkpoint` (``weights_only=True``, a clear refusal of pickled code).
    """
    from basicsr.models import base_model

    if is_ours(base_model.torch):
        return

    def load(f, map_location=None, **kwargs):
        return load_checkpoint(f, map_location=map_location)

    routed_torch = types.ModuleType('torch_with_safe_checkpoint_io')
    routed_torch.__dict__.update(torch.__dict__)
    routed_torch.save = atomic_save
    routed_torch.load = load
    ours(routed_torch)
    base_model.torch = routed_torch
    base_model.BaseModel.load_network = ours(load_any_weights_file)


def load_any_weights_file(self, net, load_path, strict=True, param_key='params'):
    """``BaseModel.load_network`` (what ``path: pretrain_network_g`` and resume use), re-stated.

    Differs from basicsr's: the file may be any weights file this package reads (a BasicSR ``.pth``, an official
    Lightning ``.ckpt`` with keys ``net.*``, AirNet's plain state dict, a ``.safetensors`` file), read without running
    pickled code; the weights are found as ``basicsr convert`` finds them (``param_key``, else basicsr's fallback to
    ``params``, else the file's own layout) and fitted by the architecture's ``adapt_weights`` (AirNet's queue size);
    a strict load of weights that do not fit is a :class:`CheckpointError` that names the file and lists the
    missing, unexpected and mis-shaped keys, where basicsr logged warnings and then failed with torch's message.
    """
    logger = get_root_logger()
    bare = self.get_bare_model(net)
    ckpt, _ = read_weights(load_path)
    if param_key is not None and param_key not in ckpt and 'params' in ckpt:
        logger.info(f'Loading: {param_key} does not exist, use params.')
        param_key = 'params'
    key = param_key if param_key in ckpt else None  # an official layout: found as `basicsr convert` finds it
    state_dict, source, notes = extract_state_dict(ckpt, key)
    target = bare.state_dict()
    state_dict = declaration(bare, 'adapt_weights')(state_dict, target, notes)
    logger.info(f'Loading {type(bare).__name__} model from {load_path}: {source}'
                + ''.join(f'; {note}' for note in notes))
    differences = format_differences(compare_state_dicts(state_dict, target))
    if differences and strict:
        raise CheckpointError(
            f'{load_path} does not match {type(bare).__name__} as configured in network_g:\n  '
            + '\n  '.join(differences) + '\nCheck network_g\'s options (`basicsr convert <file> <out.pth>` prints the '
            'network read from the weights), or set path:strict_load_g: false to load only the matching tensors.')
    if differences:
        logger.warning(f'{load_path}: loaded the matching tensors only (strict_load_g: false): '
                       + '; '.join(differences))
        shapes = {k for k, _, _ in compare_state_dicts(state_dict, target)['mismatched']}
        state_dict = {k: v for k, v in state_dict.items() if k in target and k not in shapes}
    bare.load_state_dict(state_dict, strict=strict)


def report_final_validation_at_total_iter():
    """``train_pipeline`` validates once more after its loop with a counter past ``total_iter`` (its ``break``
    leaves only the inner loop, so every remaining epoch adds one): the last validation is logged, saved and
    tagged at an iteration that never ran. ``BaseModel.validation`` passes ``total_iter`` on instead."""
    from basicsr.models import base_model

    original = base_model.BaseModel.validation
    if is_ours(original):
        return

    def validation(self, dataloader, current_iter, tb_logger, save_img=False):
        if self.opt.get('is_train') and isinstance(current_iter, int):
            current_iter = min(current_iter, int(self.opt['train']['total_iter']))
        return original(self, dataloader, current_iter, tb_logger, save_img)

    base_model.BaseModel.validation = ours(validation)


def apply():
    fix_checkpoint_io()
    report_final_validation_at_total_iter()

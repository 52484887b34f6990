"""``basicsr.models.base_model``: checkpoints written atomically and read without running pickled code, a clear
error for weights that do not fit, and the final validation reported at ``total_iter``."""
import types

import torch

from ...errors import CheckpointError
from ...utils.files import atomic_save
from ...weights.files import load_checkpoint
from ...weights.state_dict import compare_state_dicts, format_differences
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
    base_model.BaseModel.load_network = _load_network_with_clear_mismatch(base_model.BaseModel.load_network)


def _load_network_with_clear_mismatch(load_network):
    """A strict load of a non-matching file fails with torch's RuntimeError, after basicsr has only
    logged the key differences as warnings. Raise a :class:`CheckpointError` that names the file, lists
    missing/unexpected/mis-shaped keys and says how to fix it."""
    def wrapper(self, net, load_path, strict=True, param_key='params'):
        try:
            return load_network(self, net, load_path, strict, param_key)
        except RuntimeError as err:
            if isinstance(err, CheckpointError) or 'state_dict' not in str(err):
                raise
            bare = self.get_bare_model(net)
            ckpt = load_checkpoint(load_path)
            state = ckpt.get(param_key, ckpt.get('params', ckpt)) if param_key else ckpt
            state = {k[len('module.'):] if k.startswith('module.') else k: v for k, v in state.items()}
            differences = format_differences(compare_state_dicts(state, bare.state_dict()))
            raise CheckpointError(
                f'{load_path} does not match {type(bare).__name__} as configured in network_g:\n  '
                + '\n  '.join(differences) + '\nAn official release (PromptIR .ckpt, AirNet .pth) must be converted '
                'first: `basicsr convert --arch <Arch> <file> <out.pth>`. Otherwise check network_g\'s options, or set '
                'path:strict_load_g: false to load only the matching tensors.') from err

    return ours(wrapper)


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

"""How a network runs fast: mixed precision, channels-last memory, ``torch.compile``, checkpointing.

One place for the options that change speed and memory but not the math (up to rounding), used by
training, validation and test (``AllInOneModel``) and meant for every other runner of a network:

* ``amp: bf16 | fp16`` - :func:`parse_amp`, :func:`autocast`, :func:`grad_scaler` (fp16 only; bf16
  has float32's range and needs no loss scaling). Runs on the CPU too (torch's CPU autocast), where
  bf16 is fast only on CPUs with bf16 instructions.
* ``channels_last: true`` - :func:`to_channels_last`: the network's 4-D weights (convolutions) in
  channels-last memory. Other tensors keep theirs (PromptIR's prompts are 5-D, which
  ``Module.to(memory_format=...)`` refuses). Our Restormer and PromptIR run channels-last inside
  anyway; this also converts the weights, which matters for cuDNN.
* ``compile: true`` (or a mapping of ``torch.compile`` arguments) - :func:`compile_network`: the
  network's forward compiled in place, so its state-dict keys stay unchanged; if compiling fails,
  a warning is logged and the network runs eagerly.
* ``grad_checkpoint: true`` - :func:`enable_grad_checkpoint`: activation checkpointing per stage
  (``archs/grad_checkpoint.py``).
"""
import functools

from basicsr.utils import get_root_logger
import torch

from ..errors import UserError

AMP_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def parse_amp(value, option='amp'):
    """``None`` (off) for false/None, else the dtype of ``bf16`` / ``fp16``; a UserError otherwise."""
    if value is None or value is False:
        return None
    if isinstance(value, str) and value in AMP_DTYPES:
        return AMP_DTYPES[value]
    raise UserError(f'`{option}: {value!r}`: mixed precision is `bf16` (bfloat16, no loss scaling), `fp16` '
                    f'(float16 with a GradScaler) or `false`')


def autocast(device, dtype):
    """``torch.autocast`` on ``device``'s type in ``dtype``; a no-op context when ``dtype`` is None."""
    device_type = torch.device(device).type
    return torch.autocast(device_type, dtype=dtype or torch.get_autocast_dtype(device_type), enabled=dtype is not None)


def grad_scaler(device, dtype):
    """A GradScaler for fp16 training on ``device``; None for bf16, float32 or no amp."""
    return torch.amp.GradScaler(torch.device(device).type) if dtype == torch.float16 else None


def to_channels_last(net):
    """Convert ``net``'s 4-D parameters and buffers to channels-last memory, in place; returns net.

    Parameters stay the same objects (optimizers built later or before see the same tensors).
    """
    with torch.no_grad():
        for tensor in list(net.parameters()) + list(net.buffers()):
            if tensor.dim() == 4:
                tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return net


def enable_grad_checkpoint(net, option='grad_checkpoint'):
    """Turn on activation checkpointing of ``net``'s stages; a UserError if it has none."""
    if not hasattr(net, 'set_grad_checkpointing'):
        raise UserError(f'`{option}: true`: {type(net).__name__} has no checkpointed stages (PromptIR, Restormer '
                        'and AirNet have); remove the option')
    return net.set_grad_checkpointing(True)


def compile_options(value, option='compile'):
    """``compile`` option -> None (off) or the keyword arguments for ``torch.compile``."""
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, dict):
        return dict(value)
    raise UserError(f'`{option}: {value!r}`: use `true`, `false`, or a mapping of torch.compile arguments such as '
                    '`{mode: max-autotune}` or `{backend: aot_eager}`')


def compile_network(net, options=None, logger=None):
    """Compile ``net.forward`` in place with ``torch.compile(**options)``; returns ``net``.

    ``torch.compile`` compiles on the first call, so failures show up there: the first call that
    raises logs one warning (naming the error) and from then on ``net`` runs its eager forward. An
    error that is not the compiler's (a wrong input shape) is raised again by the eager forward.
    The module itself is not wrapped: ``state_dict()`` keys and DDP are unchanged. (A deep copy of
    ``net`` would share the compiled forward: compile copies separately, as the EMA network is.)
    """
    eager = net.forward
    compiled = torch.compile(eager, **(options or {}))
    failed = []

    @functools.wraps(eager)
    def forward(*args, **kwargs):
        if not failed:
            try:
                return compiled(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 - any compiler failure means: run eagerly
                failed.append(err)
                message = str(err).strip().splitlines()[0] if str(err).strip() else ''
                (logger or get_root_logger()).warning(
                    f'compile: torch.compile failed for {type(net).__name__} ({type(err).__name__}: {message}); '
                    'running without compiling')
        return eager(*args, **kwargs)

    forward.compile_failures = failed
    net.forward = forward
    return net

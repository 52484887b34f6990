"""Activation checkpointing of whole stages, for the networks that support ``grad_checkpoint``.

A network mixes in :class:`StageCheckpointing` and runs each of its stages through
:meth:`~StageCheckpointing.run_stage`. With checkpointing on (:meth:`set_grad_checkpointing`), a
training forward keeps only each stage's input; the backward pass runs the stage's forward again
to get the activations it needs, one stage at a time. That is one extra forward per step for a
peak activation memory of about one stage instead of the whole network.

The last stage a network runs is called with ``last=True`` and never checkpointed: its backward is
the first to run, right after the forward, so recomputing it would save no memory at the peak and
would cost time.
"""
import torch
from torch.utils.checkpoint import checkpoint


class StageCheckpointing:
    """Mixin for an ``nn.Module`` network; off by default, so results never depend on it."""

    grad_checkpointing = False

    def set_grad_checkpointing(self, enabled=True):
        """Turn checkpointing on or off for this network and every sub-network that supports it."""
        for module in self.modules():
            if isinstance(module, StageCheckpointing):
                module.grad_checkpointing = bool(enabled)
        return self

    def run_stage(self, stage, *inputs, last=False):
        """``stage(*inputs)``, checkpointed when enabled, training, and gradients are recorded."""
        if self.grad_checkpointing and not last and self.training and torch.is_grad_enabled():
            # Non-reentrant: works with DDP, autocast (state recorded and replayed) and inputs
            # that do not require grad.
            return checkpoint(stage, *inputs, use_reentrant=False)
        return stage(*inputs)

"""``basicsr.data.data_sampler``: the epoch a run is in, known outside the training loop.

``train_pipeline`` calls ``train_sampler.set_epoch(epoch)`` at the start of every epoch and keeps the epoch in a
local variable; a model that saves a training state on its own (on SIGTERM, or the last good state before a
non-finite loss, ``models/training_guards.py``) needs it too. ``EnlargedSampler.set_epoch`` also records it as
the class attribute ``EnlargedSampler.current_epoch``.
"""
from ..marks import is_ours, ours


def record_current_epoch():
    from basicsr.data.data_sampler import EnlargedSampler

    original = EnlargedSampler.set_epoch
    if is_ours(original):
        return

    def set_epoch(self, epoch):
        EnlargedSampler.current_epoch = epoch
        return original(self, epoch)

    EnlargedSampler.current_epoch = 0
    EnlargedSampler.set_epoch = ours(set_epoch)


def apply():
    record_current_epoch()

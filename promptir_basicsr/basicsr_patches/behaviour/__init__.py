"""Behaviour changes: what this project does differently from basicsr 1.4.2 on purpose (atomic checkpoints, clear
errors, a readable log, our registrations found on lookup, the epoch and iteration a save and the final
validation report). One module per patched basicsr module, each with its test in ``tests/basicsr_patches/``."""

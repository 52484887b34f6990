"""promptir-basicsr: PromptIR, its baselines and its successors inside BasicSR's registries.

After ``import promptir_basicsr``, basicsr is patched for today's stack the moment it is imported
(:mod:`.basicsr_patches`), and every basicsr registry lookup (``build_network``, ``build_dataset``, the option
check, ...) finds our architectures, datasets, degradations, models, losses and metrics: the modules that
register them are imported on the first lookup (:mod:`.basicsr_patches.behaviour.utils_registry`). Importing
the package itself loads neither torch nor basicsr, so the ``basicsr`` command answers at once.
"""
from .basicsr_patches import import_hook

__version__ = '0.1.0'

import_hook.install()

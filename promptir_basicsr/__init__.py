"""promptir-basicsr: PromptIR, Restormer and AirNet inside BasicSR's registries.

Importing this package first repairs basicsr 1.4.2 for today's stack (``compat``), then imports every
module of ours that registers something, found by file name the way basicsr scans its own folders:
``archs/*_arch.py``, ``data/*_dataset.py``, ``data/degradations/*.py``, ``models/*_model.py``,
``losses/*_loss.py``, ``metrics/*_metric.py``. A new file registers itself; no list to edit.
"""
import importlib
import os.path as osp

from . import compat

compat.apply_all()

__version__ = '0.1.0'

_PACKAGE_DIR = osp.dirname(osp.abspath(__file__))

# (sub-package, file-name suffix); '' imports every module of the folder.
REGISTERING_MODULES = (
    ('archs', '_arch.py'),
    ('data.degradations', '.py'),
    ('data', '_dataset.py'),
    ('models', '_model.py'),
    ('losses', '_loss.py'),
    ('metrics', '_metric.py'),
)


def _import_registering_modules():
    import os
    for subpackage, suffix in REGISTERING_MODULES:
        folder = osp.join(_PACKAGE_DIR, *subpackage.split('.'))
        if not osp.isdir(folder):
            continue
        for filename in sorted(os.listdir(folder)):
            if filename.endswith(suffix) and not filename.startswith('_'):
                importlib.import_module(f'{__name__}.{subpackage}.{filename[:-3]}')


_import_registering_modules()

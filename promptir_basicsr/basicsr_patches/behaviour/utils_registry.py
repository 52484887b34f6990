"""``basicsr.utils.registry``: our architectures, datasets, models, losses and metrics are in basicsr's registries
whenever anything looks in them.

``import promptir_basicsr`` does not import torch or basicsr (so the ``basicsr`` command answers ``--help`` at
once); our modules that register something are imported the first time a registry is asked for a name, its
names, or its entries (``get``, ``in``, iteration, ``keys``): basicsr's ``build_network`` and friends, the option
check, ``basicsr restore``. They are found by file name, the way basicsr scans its own folders:
``archs/*_arch.py``, ``data/*_dataset.py``, ``data/degradations/*.py``, ``models/*_model.py``,
``losses/*_loss.py``, ``metrics/*_metric.py``; a new file registers itself, with no list to edit.
"""
import importlib
import os
import os.path as osp

from ..marks import is_ours, ours

_PACKAGE = __name__.split('.')[0]
_PACKAGE_DIR = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# (sub-package, file-name suffix); '.py' imports every module of the folder.
REGISTERING_MODULES = (
    ('archs', '_arch.py'),
    ('data.degradations', '.py'),
    ('data', '_dataset.py'),
    ('models', '_model.py'),
    ('losses', '_loss.py'),
    ('metrics', '_metric.py'),
)
_STATE = {'done': False, 'running': False}


def import_registering_modules():
    """Import every module of ours that registers something (once; a lookup during it does not start it again)."""
    if _STATE['done'] or _STATE['running']:
        return
    _STATE['running'] = True
    try:
        for subpackage, suffix in REGISTERING_MODULES:
            folder = osp.join(_PACKAGE_DIR, *subpackage.split('.'))
            for filename in sorted(os.listdir(folder)):
                if filename.endswith(suffix) and not filename.startswith('_'):
                    importlib.import_module(f'{_PACKAGE}.{subpackage}.{filename[:-3]}')
        _STATE['done'] = True
    finally:
        _STATE['running'] = False


def register_on_first_lookup():
    from basicsr.utils.registry import Registry

    if is_ours(Registry.get):
        return
    for name in ('get', '__contains__', '__iter__', 'keys'):
        original = getattr(Registry, name)

        def lookup(self, *args, _original=original, **kwargs):
            import_registering_modules()
            return _original(self, *args, **kwargs)

        lookup.__name__ = name
        setattr(Registry, name, ours(lookup))


def apply():
    register_on_first_lookup()

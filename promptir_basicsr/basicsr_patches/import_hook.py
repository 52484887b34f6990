"""basicsr patched the moment it is imported, so ``import promptir_basicsr`` itself stays light.

Importing this package must not import torch or basicsr (several seconds): the ``basicsr`` command answers
``--help`` and option-file typos before they load. Yet basicsr must never run unpatched: its import fails on
today's torchvision without the alias of :mod:`.repairs.data_degradations`, and every other patch must be in
place before basicsr's code runs. :func:`install` puts a finder first on ``sys.meta_path`` that, when ``basicsr``
is imported (by anyone: our modules, a user's script after ``import promptir_basicsr``, a data loader worker),
wraps its loader: the alias first, then basicsr's own import, then :func:`~.apply.apply_all`.
"""
import importlib.abc
import sys


class _PatchingLoader(importlib.abc.Loader):
    """basicsr's own loader, with the patches applied around its ``exec_module``."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        from .repairs.data_degradations import alias_functional_tensor
        alias_functional_tensor()
        self.loader.exec_module(module)
        _uninstall()
        patch_basicsr()

    def __getattr__(self, name):  # resources, file names: whatever else asks basicsr's loader
        return getattr(self.loader, name)


class _BasicsrFinder(importlib.abc.MetaPathFinder):
    """Finds ``basicsr`` with the other finders and hands out its spec with :class:`_PatchingLoader`. It stays on
    ``sys.meta_path`` until basicsr is imported (a mere ``find_spec``, by a tool that looks without importing,
    must not make the real import miss the patches)."""

    def find_spec(self, name, path=None, target=None):
        if name != 'basicsr':
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = getattr(finder, 'find_spec', lambda *args: None)(name, path, target)
            if spec is not None:
                spec.loader = _PatchingLoader(spec.loader)
                return spec
        return None


def _uninstall():
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, _BasicsrFinder)]


def patch_basicsr():
    """Apply every patch now (basicsr is imported)."""
    # Imported here, not at the top: the patches import basicsr (and torch), which this module must not.
    from .apply import apply_all
    apply_all()


def install():
    """Patch basicsr when it is imported; at once if it already is."""
    if 'basicsr' in sys.modules:
        patch_basicsr()
    elif not any(isinstance(finder, _BasicsrFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _BasicsrFinder())

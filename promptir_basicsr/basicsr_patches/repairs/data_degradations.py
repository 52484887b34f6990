"""``basicsr.data.degradations``: its import of a module torchvision renamed, and a JPEG quality OpenCV refuses."""
import importlib
import sys

from ..marks import is_ours, ours


def alias_functional_tensor():
    """torchvision 0.17 renamed ``transforms.functional_tensor`` to ``_functional_tensor``.

    ``basicsr/data/degradations.py`` still imports the old name, so ``import basicsr`` fails. Register the new
    module under the old name, only when the old one is missing. Must run before basicsr is imported
    (``promptir_basicsr/__init__.py`` runs it as basicsr's import starts).
    """
    old_name = 'torchvision.transforms.functional_tensor'
    if old_name in sys.modules:
        return
    try:
        importlib.import_module(old_name)
    except ImportError:
        sys.modules[old_name] = importlib.import_module('torchvision.transforms._functional_tensor')


def fix_jpeg_quality_type():
    """OpenCV 5 rejects a float JPEG quality; basicsr's ``add_jpg_compression`` passes one."""
    from basicsr.data import degradations

    original = degradations.add_jpg_compression
    if is_ours(original):
        return

    def add_jpg_compression(img, quality=90):
        return original(img, int(round(float(quality))))

    degradations.add_jpg_compression = ours(add_jpg_compression)


def apply():
    fix_jpeg_quality_type()

"""The top-level option ``demo_data``: make the demo data set before a run checks its paths.

``demo_data: true`` creates ``datasets/demo`` (relative to the current directory, where the option
files expect it) when it is missing or from an older generator; ``demo_data: <folder>`` uses that
folder. Called by :func:`promptir_basicsr.options.prepare_run` before the options are validated.
The generator is the data package's :func:`promptir_basicsr.data.demo.ensure_demo_data`.
"""
import os
import os.path as osp

DEFAULT_ROOT = 'datasets/demo'


def demo_data_root(opt):
    """The folder ``opt['demo_data']`` asks for, or None when it asks for none."""
    value = opt.get('demo_data')
    if not value:
        return None
    return value if isinstance(value, str) else DEFAULT_ROOT


def prepare_demo_data(opt):
    """Create the demo data if ``opt['demo_data']`` asks for it; returns its folder or None."""
    root = demo_data_root(opt)
    if root is None:
        return None
    from ..data.demo import ensure_demo_data
    # Under torchrun every rank gets here at once: a file lock lets one write, the others then find
    # the data complete (building it removes an incomplete folder first, which would break a writer).
    lock_path = osp.abspath(root).rstrip(os.sep) + '.lock'
    os.makedirs(osp.dirname(lock_path), exist_ok=True)
    with open(lock_path, 'w') as lock:
        try:
            import fcntl
            fcntl.flock(lock, fcntl.LOCK_EX)
        except ImportError:  # not POSIX: no concurrent launches to guard against here
            pass
        return ensure_demo_data(root)

"""Writing files so that nothing written is ever lost or half there: a temporary file beside the target, fsync,
then a rename over it. Every checkpoint, training state, image, table and plot of this project is written here.
"""
import contextlib
import os
import os.path as osp
import tempfile


def _new_file_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def _atomic_file(path, mode):
    """An open temporary file beside ``path``; on success fsync'd and renamed over ``path``, else removed.

    A reader never sees a half-written file: either the old file or the complete new one. The temporary
    name starts with '.' and ends in '.tmp', so no scan for ``*.pth``/``*.state``/``*.png`` ever picks it
    up. The file gets the permissions a plain ``open`` would give (mkstemp makes 0600).
    """
    path = os.fspath(path)
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=f'.{osp.basename(path)}.', suffix='.tmp', dir=folder)
    try:
        with os.fdopen(fd, mode, **({} if 'b' in mode else {'encoding': 'utf-8'})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp_path, _new_file_mode())
        os.replace(tmp_path, path)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise


def atomic_save(obj, path, *args, **kwargs):
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename over ``path``."""
    import torch  # here: text and image writers must not load torch (the CLI's --help path uses them)
    with _atomic_file(path, 'wb') as f:
        torch.save(obj, f, *args, **kwargs)


def atomic_write_text(path, text):
    """Write ``text`` (UTF-8) to ``path`` the same way: a temporary file, fsync, rename."""
    with _atomic_file(path, 'w') as f:
        f.write(text)


def atomic_write_bytes(path, data):
    """Write ``data`` (bytes: images, plots) to ``path`` the same way."""
    with _atomic_file(path, 'wb') as f:
        f.write(data)

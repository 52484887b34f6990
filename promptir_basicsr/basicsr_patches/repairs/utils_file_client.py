"""``basicsr.utils.file_client``: py-lmdb 3 refuses to open one database twice in a process."""
import os
import os.path as osp

from ..marks import is_ours, ours

_LMDB_ENVS = {}


def open_lmdb(path, **kwargs):
    """One read environment per (process, real path): py-lmdb 3 refuses a second ``open``.

    Train and validation reading the same database, or a re-forked worker, would open it twice.
    The process id in the key gives each forked worker its own environment.
    """
    import lmdb
    key = (os.getpid(), osp.realpath(path))
    env = _LMDB_ENVS.get(key)
    if env is None:
        env = lmdb.open(str(path), **kwargs)
        _LMDB_ENVS[key] = env
    return env


def fix_lmdb_reopen():
    """Make basicsr's ``LmdbBackend`` open its databases through :func:`open_lmdb`.

    Differs from basicsr's ``__init__`` only in calling :func:`open_lmdb` instead of ``lmdb.open``.
    """
    from basicsr.utils import file_client

    if is_ours(file_client.LmdbBackend.__init__):
        return

    def __init__(self, db_paths, client_keys='default', readonly=True, lock=False, readahead=False, **kwargs):
        client_keys = [client_keys] if isinstance(client_keys, str) else list(client_keys)
        self.db_paths = [str(v) for v in db_paths] if isinstance(db_paths, (list, tuple)) else [str(db_paths)]
        if len(client_keys) != len(self.db_paths):
            raise ValueError(f'client_keys and db_paths should have the same length, '
                             f'but received {len(client_keys)} and {len(self.db_paths)}.')
        self._client = {
            client: open_lmdb(path, readonly=readonly, lock=lock, readahead=readahead, **kwargs)
            for client, path in zip(client_keys, self.db_paths)
        }

    file_client.LmdbBackend.__init__ = ours(__init__)


def apply():
    fix_lmdb_reopen()

"""basicsr_patches/repairs/utils_file_client.py: one LMDB opened twice in a process. Each test fails without its patch."""
import cv2
import numpy as np


def _tiny_lmdb(tmp_path):
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs
    folder = tmp_path / 'imgs'
    folder.mkdir()
    cv2.imwrite(str(folder / 'a.png'), np.full((8, 8, 3), 7, np.uint8))
    make_lmdb_from_imgs(str(folder), str(tmp_path / 'db.lmdb'), ['a.png'], ['a'], map_size=1 << 20)
    return str(tmp_path / 'db.lmdb')


def test_lmdb_opened_twice_in_one_process(tmp_path):
    from basicsr.utils import FileClient, imfrombytes
    db = _tiny_lmdb(tmp_path)
    # Train and val datasets on the same database: py-lmdb 3 refuses the second lmdb.open.
    first = FileClient('lmdb', db_paths=[db], client_keys=['gt'])
    second = FileClient('lmdb', db_paths=[db], client_keys=['gt'])
    for client in (first, second):
        assert imfrombytes(client.get('a', 'gt'), float32=False)[0, 0, 0] == 7

"""The official state-dict key lists (``<name>_official.tsv``: key TAB shape) of this folder."""
import ast
from pathlib import Path

KEYS_DIR = Path(__file__).resolve().parent


def official_key_shapes(name):
    """{key: shape tuple} of ``<name>_official.tsv``, in file order (name: promptir, restormer, airnet)."""
    keys = {}
    for line in (KEYS_DIR / f'{name}_official.tsv').read_text().splitlines():
        if line.strip():
            key, shape = line.split('\t')
            keys[key] = tuple(ast.literal_eval(shape))
    return keys

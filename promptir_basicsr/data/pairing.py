"""Pairing rules: which ground-truth file belongs to a degraded (lq) file. Defined once, used by the
training mix (:mod:`all_in_one_dataset`), the val/test dataset (:mod:`degraded_dataset`) and
``scripts/create_lmdb.py``.

Names are paths relative to the dataroot with '/' separators and their extension, e.g.
``part1/0001_0.8_0.2.jpg``; they are the same whether the images live in a folder or in an LMDB made
by ``create_lmdb.py`` (see :func:`lmdb_key`). A rule maps an lq name to a gt name.

Option forms (in a source / dataset):

- ``pairing: same`` (default): the gt has the lq's name.
- ``filename_tmpl: '{}_rain'`` (basicsr's key): lq stem = template filled with the gt stem, same
  extension and sub-folder; here read backwards (lq -> gt).
- ``pairing: {type: regex, pattern: '(\\d+)_.*\\.jpg', repl: '\\1.png'}``: ``pattern`` must match the
  whole lq name (``re.fullmatch``); the gt name is ``repl`` expanded with its groups.
- ``pairing: <preset>``, one of :data:`PRESETS` (the official datasets' rules).
"""
import os.path as osp
import re
from urllib.parse import quote, unquote

PRESETS = {
    # Rain100L train (PromptIR data/Train/Derain): rainy/rain-12.png -> gt/norain-12.png
    'rain100l': {'type': 'regex', 'pattern': r'(.*/)?rain-([^/]+)', 'repl': r'\1norain-\2'},
    # SOTS outdoor test: hazy/0001_0.8_0.2.jpg -> gt/0001.png
    'sots': {'type': 'regex', 'pattern': r'(.*/)?(\d+)_[^/]*', 'repl': r'\2.png'},
    # RESIDE OTS train (PromptIR data/Train/Dehaze): synthetic/part1/0001_0.8_0.2.jpg -> original/0001.jpg
    'ots': {'type': 'regex', 'pattern': r'(?:.*/)?(\d+)_[^/]*\.(\w+)', 'repl': r'\1.\2'},
}


class PairingRule:
    """Maps an lq name to its gt name; ``describe()`` is a one-line text for logs and errors."""

    kind = 'same'

    def gt_name(self, lq_name):
        return lq_name

    def describe(self):
        return 'same name'

    def to_option(self):
        return 'same'


class RegexPairing(PairingRule):
    kind = 'regex'

    def __init__(self, pattern, repl, label=None):
        try:
            self.regex = re.compile(pattern)
        except re.error as err:
            raise ValueError(f'pairing: invalid regular expression {pattern!r}: {err}') from err
        self.pattern, self.repl, self.label = pattern, repl, label

    def gt_name(self, lq_name):
        match = self.regex.fullmatch(lq_name)
        if match is None:
            return None
        return match.expand(self.repl).replace('\\', '/')

    def describe(self):
        text = f'regex {self.pattern!r} -> {self.repl!r}'
        return f'{self.label} ({text})' if self.label else text

    def to_option(self):
        return self.label or {'type': 'regex', 'pattern': self.pattern, 'repl': self.repl}


class TemplatePairing(PairingRule):
    """basicsr's ``filename_tmpl`` (gt stem -> lq stem), applied backwards to find the gt."""

    kind = 'tmpl'

    def __init__(self, template):
        if template.count('{}') != 1:
            raise ValueError(f"filename_tmpl must contain '{{}}' exactly once, got {template!r}")
        before, after = template.split('{}')
        self.template = template
        self.regex = re.compile(re.escape(before) + '(.+?)' + re.escape(after))

    def gt_name(self, lq_name):
        folder, base = osp.split(lq_name)
        stem, ext = osp.splitext(base)
        match = self.regex.fullmatch(stem)
        if match is None:
            return None
        name = match.group(1) + ext
        return f'{folder}/{name}' if folder else name

    def describe(self):
        return f'filename_tmpl {self.template!r}'

    def to_option(self):
        return {'type': 'tmpl', 'filename_tmpl': self.template}


def build_pairing(opt, where='dataset'):
    """The rule of a source/dataset option dict (keys ``pairing`` and basicsr's ``filename_tmpl``)."""
    spec = opt.get('pairing')
    tmpl = opt.get('filename_tmpl')
    if spec is not None and tmpl not in (None, '{}'):
        raise ValueError(f'{where}: give either `pairing` or `filename_tmpl`, not both')
    if spec is None:
        return TemplatePairing(tmpl) if tmpl not in (None, '{}') else PairingRule()
    label = None
    if isinstance(spec, str):
        if spec == 'same':
            return PairingRule()
        if spec not in PRESETS:
            raise ValueError(f'{where}: unknown pairing {spec!r}; use same, one of the presets '
                             f'{", ".join(sorted(PRESETS))}, {{type: regex, pattern: ..., repl: ...}} or '
                             "{type: tmpl, filename_tmpl: '{}_x'}")
        label, spec = spec, PRESETS[spec]
    if not isinstance(spec, dict) or 'type' not in spec:
        raise ValueError(f'{where}: pairing must be a name or a mapping with a `type`, got {spec!r}')
    kind = spec['type']
    try:
        if kind == 'same':
            return PairingRule()
        if kind == 'regex':
            return RegexPairing(spec['pattern'], spec['repl'], label=label)
        if kind == 'tmpl':
            return TemplatePairing(spec['filename_tmpl'])
    except KeyError as err:
        raise ValueError(f'{where}: pairing of type {kind!r} needs the key {err}') from err
    except ValueError as err:
        raise ValueError(f'{where}: {err}') from err
    raise ValueError(f'{where}: unknown pairing type {kind!r}; use same, regex or tmpl')


# ---------------------------------------------------------------------------------------------
# LMDB keys. basicsr's readers cut a key at its first '.', and meta_info.txt is space separated, so
# a key holds no '.', no space, no '/'. Names are percent-encoded (plus '.' -> %2E): reversible, so
# an LMDB source has exactly the names of its folder (pairing rules, list files and per-image seeds
# work unchanged).
# ---------------------------------------------------------------------------------------------

def lmdb_key(name):
    """The LMDB key of a relative name: ``part1/0001_0.8.jpg`` -> ``part1%2F0001_0%2E8%2Ejpg``."""
    return quote(name.replace('\\', '/'), safe='_-').replace('.', '%2E')


def name_from_lmdb_key(key):
    """Inverse of :func:`lmdb_key`."""
    return unquote(key)

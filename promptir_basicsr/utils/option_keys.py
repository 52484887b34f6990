"""How an option key is declared: :class:`Key`, and the declarations that are not on a class of their own.

Whoever reads an option key declares it (``OPTIONS`` on a model or dataset class, a constructor's signature for
what is built from a section); ``promptir_basicsr.options.schema`` walks an option file against the declarations
and reports every problem at once. This module is what those declarations need, and nothing more: it imports
nothing of the package above it, so models, datasets and plugins can declare keys without importing the checker.
"""
import difflib
import inspect
import re
from collections.abc import Mapping


_TYPE_NAMES = {int: 'a whole number', float: 'a number', bool: 'true or false', str: 'a string', list: 'a list',
               dict: 'a mapping', None: '~ (null)'}


def _matches(value, kind):
    if kind is None:
        return value is None
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:  # a number: YAML writes 0.01 but also 0 or 1000
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is list:
        return isinstance(value, (list, tuple))
    if kind is dict:
        return isinstance(value, Mapping)
    return isinstance(value, kind)


_NUMBER_TEXT = re.compile(r'^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$')


class Key:
    """What one option key may be.

    ``Key(int, None)``: a whole number or ``~``; ``Key()``: anything. ``float`` means any number, ``list`` a
    list, ``dict`` a mapping. ``required``: True, or ``'train'`` (only in a training run, or only for the
    ``train`` dataset). ``choices``: the allowed values. ``items``: for a list of mappings, the schema (a dict
    of Keys) every entry follows. ``check(checker, value, where)``: a further check of the value (used for
    sections whose keys come from a class named inside them, like ``network_g``).
    """

    def __init__(self, *types, required=False, choices=None, items=None, check=None):
        self.types = types
        self.required = required
        self.choices = None if choices is None else tuple(choices)
        self.items = items
        self.check = check

    def is_required(self, train):
        return self.required is True or (self.required == 'train' and train)

    def describe(self):
        return ' or '.join(_TYPE_NAMES.get(kind, getattr(kind, '__name__', str(kind))) for kind in self.types)

    def problems(self, value, where):
        """Type and value problems of ``value`` (nested entries are checked by the checker)."""
        if self.types and not any(_matches(value, kind) for kind in self.types):
            hint = ''
            if isinstance(value, str) and _NUMBER_TEXT.match(value) and (float in self.types or int in self.types):
                mantissa, _, exponent = value.lower().partition('e')
                dotted = f'{mantissa}.0e{exponent}' if exponent and '.' not in mantissa else value
                hint = f' (YAML reads {value} as text: write {dotted} or !!float {value})'
            return [f'`{where}` must be {self.describe()}, got {value!r}{hint}']
        if self.choices is not None and value not in self.choices:
            shown = ', '.join('~' if c is None else str(c) for c in self.choices)
            return [f'`{where}` must be one of: {shown}; got {value!r}{closest_hint(value, self.choices)}']
        return []


def _types_from_default(default):
    if default is None:
        return ()
    if isinstance(default, bool):
        return (bool, )
    if isinstance(default, (int, float)):
        return (float, )  # 0 as a default must not refuse 0.01 (weight_decay=0, eta_min=0)
    if isinstance(default, str):
        return (str, )
    if isinstance(default, (list, tuple)):
        return (list, )
    if isinstance(default, Mapping):
        return (dict, )
    return ()


def signature_schema(function, skip=(), typed=True):
    """``(schema, open)`` of a callable's arguments: a Key per argument (required when it has no default,
    typed by its default), except those named in ``skip``; ``open`` when it takes ``**kwargs``."""
    parameters = inspect.signature(function).parameters.values()
    schema, is_open = {}, False
    for p in parameters:
        if p.kind is p.VAR_KEYWORD:
            is_open = True
        elif p.name not in skip and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
            types = _types_from_default(p.default) if typed and p.default is not p.empty else ()
            schema[p.name] = Key(*types, required=p.default is p.empty)
    return schema, is_open


# ---- declarations ------------------------------------------------------------------------------------


def closest_hint(key, known):
    match = difflib.get_close_matches(str(key), [str(k) for k in known if k is not None], n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ''


_REGISTERED = {}  # section -> {key: Key()}, from register_known_keys


def register_known_keys(section, *keys):
    """Declare keys of ``section`` ('' for the top level, 'train', 'val', ...) read by code that has no
    class to declare them on (a plugin's helper, a patch); a class declares its own keys in ``OPTIONS``."""
    _REGISTERED.setdefault(section, {}).update({key: Key() for key in keys})


def registered_keys(section):
    """``{key: Key}`` registered for ``section`` with :func:`register_known_keys`."""
    return dict(_REGISTERED.get(section, {}))


def declared_sections(cls):
    """A model class's ``OPTIONS`` merged along its bases (subclasses win): ``{section: {key: Key}}``."""
    merged = {}
    for klass in reversed(getattr(cls, '__mro__', ())):
        for section, keys in (vars(klass).get('OPTIONS') or {}).items():
            merged.setdefault(section, {}).update(keys)
    return merged


def loader_keys(phase):
    """The keys basicsr's loaders read for every dataset (``basicsr.data.build_dataloader`` and the
    pipelines); ``batch_size_per_gpu`` and ``num_worker_per_gpu`` are required for the train set."""
    train = phase == 'train'
    return {
        'name': Key(str, required=True), 'type': Key(str, required=True), 'phase': Key(str), 'scale': Key(int),
        'batch_size_per_gpu': Key(int, required=train), 'num_worker_per_gpu': Key(int, required=train),
        'dataset_enlarge_ratio': Key(float), 'use_shuffle': Key(bool), 'pin_memory': Key(bool),
        'persistent_workers': Key(bool), 'prefetch_mode': Key(str, None, choices=('cpu', 'cuda', None)),
        'num_prefetch_queue': Key(int),
    }


def dataset_keys(cls, phase='train'):
    """Every key a dataset class accepts: its ``OPTIONS`` plus the loader keys (used by the datasets'
    own warnings when built without the checker)."""
    return {**loader_keys(phase), **(getattr(cls, 'OPTIONS', None) or {})}

"""Option files as text: reading them, ``--force_yml`` overrides, the ``plugins:`` they import, and writing them back
as readable YAML. Needs nothing of torch or basicsr, so a malformed file is reported at once.
"""
import ast
import importlib
import os.path as osp
import sys
from collections.abc import Mapping

import yaml

from ..errors import OptionError

# libyaml's parser when PyYAML was built with it (several times faster on large files), else the Python one
_SAFE_LOADER = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)


def read_option_file(opt_path):
    """The option file as a dict (in file order), with a clear error for a missing or malformed file."""
    if not osp.isfile(opt_path):
        raise OptionError(f'Option file not found: {opt_path}')
    with open(opt_path, encoding='utf-8') as f:
        try:
            opt = yaml.load(f, Loader=_SAFE_LOADER)
        except yaml.YAMLError as err:
            raise OptionError(f'{opt_path}: not valid YAML: {err}') from err
    if not isinstance(opt, dict):
        raise OptionError(f'{opt_path}: the top level must be a mapping of option keys, got {type(opt).__name__}')
    return opt


def force_yml_value(text):
    """A ``--force_yml`` value as basicsr's ``parse_options`` reads it: ``~``/``none`` -> None, ``true``/``false``,
    ``!!float 2e-4``, whole and decimal numbers, a ``[...]`` list (a Python literal), anything else a string."""
    lowered = text.lower()
    if text == '~' or lowered == 'none':
        return None
    if lowered in ('true', 'false'):
        return lowered == 'true'
    if text.startswith('!!float'):
        return float(text[len('!!float'):])
    if text.isdigit():
        return int(text)
    if text.count('.') < 2 and text.replace('.', '', 1).isdigit():
        return float(text)
    if text.startswith('['):
        return ast.literal_eval(text)
    return text


def apply_force_yml(opt, entries):
    """basicsr's ``--force_yml a:b=value`` applied to ``opt`` (its value rules: :func:`force_yml_value`).

    Used to check the options a run will really have; basicsr applies them again itself.
    """
    for entry in entries or []:
        if '=' not in entry:
            raise OptionError(f'--force_yml {entry!r}: expected key:subkey=value')
        keys, value = (part.strip() for part in entry.split('=', 1))
        *parents, last = keys.split(':')
        node = opt
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise OptionError(f'--force_yml {entry!r}: no option section {key!r}')
            node = node[key]
        try:
            node[last] = force_yml_value(value)
        except (ValueError, SyntaxError) as err:
            raise OptionError(f'--force_yml {entry!r}: cannot read the value {value!r} ({type(err).__name__}: {err}); '
                              "basicsr reads a list as Python, so quote its strings: key=['a','b']") from err
    return opt


def import_plugins(opt, opt_path):
    """Import the modules named by the top-level ``plugins:`` key, so they can register things.

    Returns the imported modules. A module that cannot be imported is an :class:`OptionError` that
    names the option file and the module.
    """
    plugins = opt.get('plugins') or []
    if isinstance(plugins, str):
        plugins = [plugins]
    if not isinstance(plugins, (list, tuple)):
        raise OptionError(f'{opt_path}: `plugins` must be a list of Python module names, got {plugins!r}')
    # A console script does not put the current directory on sys.path; users expect a plugin file
    # beside them or beside the option file to import.
    for folder in (osp.dirname(osp.abspath(opt_path)), osp.abspath('.')):
        if folder not in sys.path:
            sys.path.append(folder)
    modules = []
    for name in plugins:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as err:
            raise OptionError(
                f'{opt_path}: plugins: cannot import module {name!r} ({err}). Install it, or put its folder on '
                'PYTHONPATH (or run from the folder that holds it).') from err
    return modules


# ---- notes for the start of the run's log -----------------------------------------------------------------
_NOTES = []  # (level, message) gathered by options.prepare.prepare_run before basicsr's logger exists


def add_note(message, level='info'):
    """Keep ``message`` for the start of the run's log (``level``: 'info' or 'warning')."""
    _NOTES.append((level, message))


def take_notes():
    """The notes kept so far (each returned once)."""
    notes = list(_NOTES)
    _NOTES.clear()
    return notes


def clear_notes():
    _NOTES.clear()


# ---- the options as readable YAML (the log's echo, ablation variants' option files) ------------------------
class _FlowMapping(dict):
    """A mapping written on one line, as option files write each entry of ``sources``."""


class _EchoDumper(yaml.SafeDumper):
    pass


def _represent_mapping(dumper, data):
    return dumper.represent_mapping('tag:yaml.org,2002:map', data.items(), flow_style=isinstance(data, _FlowMapping))


def _represent_list(dumper, data):
    flat = all(not isinstance(v, (Mapping, list, tuple)) for v in data)
    return dumper.represent_sequence('tag:yaml.org,2002:seq', data, flow_style=flat)


_EchoDumper.add_representer(type(None), lambda dumper, _: dumper.represent_scalar('tag:yaml.org,2002:null', '~'))
_EchoDumper.add_representer(dict, _represent_mapping)
_EchoDumper.add_representer(_FlowMapping, _represent_mapping)
_EchoDumper.add_representer(list, _represent_list)


def _plain(node, in_list=False):
    if isinstance(node, Mapping):
        return (_FlowMapping if in_list else dict)((str(k), _plain(v)) for k, v in node.items())
    if isinstance(node, (list, tuple)):
        return [_plain(v, in_list=True) for v in node]
    return node


def options_yaml(opt):
    """The options as YAML in the option files' style: sections as blocks, lists of numbers and the entries
    of lists of mappings (``sources``, ``degradation``) on one line each."""
    return yaml.dump(_plain(opt), Dumper=_EchoDumper, sort_keys=False, allow_unicode=True, width=200)

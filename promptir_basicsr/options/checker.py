"""The checks of an option file that need nothing but the file: basicsr's own keys and sections, the options of our
architectures and the keys of our datasets and models (read from their source files, not imported), and the data
and checkpoint paths. They run before torch is even imported, so the commonest mistakes (a misspelt basicsr key,
architecture option, dataset or model key, a missing required key, a wrong type, a path that does not exist) are
answered in a fraction of a second; the checks that need the networks, models and datasets loaded
(``options/schema.py``) run once these pass.

:class:`Checker` is the walker both use: it compares a mapping with a schema of :class:`Key` declarations and
collects every problem.
"""
import ast
import functools
import glob
import os
import os.path as osp
from collections.abc import Mapping

from ..errors import OptionError
from ..utils.option_keys import Key, closest_hint, loader_keys
from .files import apply_force_yml, import_plugins, read_option_file


def _join(where, key):
    return f'{where}:{key}' if where else str(key)


class Checker:
    """Collects the problems of one option dict; ``is_train`` selects the training-run requirements."""

    def __init__(self, opt, is_train):
        self.opt, self.is_train, self.problems = opt, is_train, []

    def add(self, message):
        if message not in self.problems:
            self.problems.append(message)

    def mapping(self, node, schema, where, train=None, owner=None, is_open=False):
        """Unknown, missing, mistyped keys of ``node`` against ``schema``; then each Key's nested check."""
        train = self.is_train if train is None else train
        unmatched = []  # unknown keys without a close known name: one problem listing what is known
        for key, value in node.items():
            spec = schema.get(key)
            if spec is None:
                hint = closest_hint(key, schema)
                if is_open:
                    pass
                elif hint or not owner:
                    self.add(f'unknown key `{_join(where, key)}`{hint}')
                else:
                    unmatched.append(f'`{_join(where, key)}`')
                continue
            found = spec.problems(value, _join(where, key))
            for message in found:
                self.add(message)
            if found or value is None:
                continue
            if spec.items is not None and isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    here = f'{_join(where, key)}[{i}]'
                    if isinstance(item, Mapping):
                        self.mapping(item, spec.items, here, train=train, owner=f'each entry of `{key}`')
                    else:
                        self.add(f'`{here}` must be a mapping of keys, got {item!r}')
            if spec.check is not None:
                spec.check(self, value, _join(where, key))
        if unmatched:
            known = ', '.join(sorted(k for k in schema if k != 'type'))
            self.add(f'unknown key{"s" if len(unmatched) > 1 else ""} {", ".join(unmatched)}; {owner} reads: {known}')
        for key, spec in schema.items():
            if key not in node and spec.is_required(train):
                self.add(f'missing required key `{_join(where, key)}`')


# basicsr 1.4.2's own keys, per section ('' is the top level), with their types.
_NUMBER = float
BASICSR_OPTIONS = {
    '': {
        'name': Key(str, required=True), 'model_type': Key(str, required=True),
        'scale': Key(int), 'num_gpu': Key(), 'manual_seed': Key(int, None),
        'datasets': Key(dict, required=True),
        'network_g': Key(dict, required=True), 'network_d': Key(dict),
        'path': Key(dict, required=True), 'train': Key(dict, required='train'),
        'val': Key(dict, None), 'logger': Key(dict, required='train'), 'dist_params': Key(dict, None),
        'find_unused_parameters': Key(bool), 'plugins': Key(list, str, None), 'demo_data': Key(bool, str, None),
        # set by basicsr's parse_options (present when checking parsed options)
        'is_train': Key(bool), 'dist': Key(bool), 'rank': Key(int), 'world_size': Key(int),
        'auto_resume': Key(bool), 'root_path': Key(str),
        'high_order_degradation': Key(bool),  # basicsr's Real-ESRGAN models
    },
    'path': {
        'pretrain_network_g': Key(str, None), 'pretrain_network_d': Key(str, None), 'strict_load_g': Key(bool),
        'strict_load_d': Key(bool), 'param_key_g': Key(str, None), 'param_key_d': Key(str, None),
        'resume_state': Key(str, None), 'ignore_resume_networks': Key(list, str, None),
        'experiments_root': Key(str), 'models': Key(str), 'training_states': Key(str), 'log': Key(str),
        'visualization': Key(str), 'results_root': Key(str)},
    'logger': {
        'print_freq': Key(_NUMBER, required=True), 'save_checkpoint_freq': Key(_NUMBER, required=True),
        'use_tb_logger': Key(bool), 'wandb': Key(dict, None)},
    'val': {
        'val_freq': Key(_NUMBER, required='train'), 'save_img': Key(bool), 'suffix': Key(str, None),
        'metrics': Key(dict, None), 'pbar': Key(bool, None),
        # basicsr's video models
        'center_frame_only': Key(bool), 'flip_seq': Key(bool), 'num_val_samples': Key(int)},
    'train': {
        'optim_g': Key(dict, required=True), 'optim_d': Key(dict),
        'scheduler': Key(dict, None), 'total_iter': Key(_NUMBER, required=True),
        'warmup_iter': Key(_NUMBER), 'pixel_opt': Key(dict, None), 'perceptual_opt': Key(dict, None),
        'gan_opt': Key(dict, None), 'ema_decay': Key(_NUMBER), 'net_d_iters': Key(int), 'net_d_init_iters': Key(int)},
    'dist_params': {'backend': Key(str), 'port': Key(int)},
}
SECTIONS = ('path', 'logger', 'val', 'train', 'dist_params')

#: the sections of basicsr's own keys that only basicsr reads (no model declares keys there)
BASICSR_ONLY_SECTIONS = ('path', 'logger', 'dist_params')


def check_file(opt_path, is_train=True, force_yml=None):
    """The option file with ``--force_yml`` applied and its ``plugins:`` imported, after :func:`static_problems`
    found nothing; otherwise an :class:`OptionError` listing them (a fraction of a second without plugins: see the
    module docstring). A plugin that cannot be imported is reported first, naming the file."""
    opt = apply_force_yml(read_option_file(opt_path), force_yml)
    import_plugins(opt, opt_path)
    # Paths under the demo data folder may not exist yet (the run writes it); the full check looks at them.
    problems = static_problems(opt, is_train, check_paths=not opt.get('demo_data'))
    if problems:
        raise OptionError(format_problems(opt_path, problems))
    return opt


def format_problems(opt_path, problems):
    """One message listing every problem of an option file."""
    listing = '\n'.join(f'  - {p}' for p in problems)
    return f'{opt_path}: {len(problems)} problem(s) in the options:\n{listing}'


def static_problems(opt, is_train=True, check_paths=True):
    """The problems of ``opt`` that can be told from the file alone (see the module docstring): missing required
    basicsr keys and wrong types of basicsr's keys at every level, unknown keys in the sections only basicsr reads,
    a top-level key that is a misspelling of a missing basicsr key, and (``check_paths``) paths that do not exist. Models and plugins may declare more top-level,
    ``train`` and ``val`` keys, so unknown keys there wait for the full check."""
    checker = Checker(opt, is_train)
    top = BASICSR_OPTIONS['']
    for key, value in opt.items():
        if key in top:
            for message in top[key].problems(value, key):
                checker.add(message)
        else:
            missing = [k for k, spec in top.items() if k not in opt and spec.is_required(is_train)]
            hint = closest_hint(key, missing)
            if hint:
                checker.add(f'unknown key `{key}`{hint}')
    for key, spec in top.items():
        if key not in opt and spec.is_required(is_train):
            checker.add(f'missing required key `{key}`')
    for name in SECTIONS:
        node = opt.get(name)
        if not isinstance(node, Mapping) or (name == 'train' and not is_train):
            continue
        schema = BASICSR_OPTIONS[name]
        if name in BASICSR_ONLY_SECTIONS and not opt.get('plugins'):  # a plugin may register keys anywhere
            checker.mapping(node, schema, name)
            continue
        for key, value in node.items():
            if key in schema:
                for message in schema[key].problems(value, _join(name, key)):
                    checker.add(message)
        for key, spec in schema.items():
            if key not in node and spec.is_required(is_train):
                checker.add(f'missing required key `{_join(name, key)}`')
    network = opt.get('network_g')
    known = our_architectures().get(network.get('type')) if isinstance(network, Mapping) else None
    if known is not None and not known[1]:  # our architecture, no **kwargs: its argument names are its options
        checker.mapping(network, {'type': Key(), **{name: Key() for name in known[0]}}, 'network_g',
                        owner=network['type'])
    _misspelt_dataset_keys(checker, opt.get('datasets'))
    if not opt.get('plugins'):  # a plugin may register keys of these sections
        _misspelt_model_keys(checker, opt, is_train)
    return checker.problems + (path_problems(opt) if check_paths else [])


def _misspelt_dataset_keys(checker, datasets):
    """A key of one of our datasets' sections (or of an entry of its ``sources``) that is not declared and is close
    to a declared key the section lacks: ``gt_sise`` where ``gt_size`` is missing; and basicsr's required loader
    keys (``batch_size_per_gpu`` of the train set) that are missing. Other unknown keys wait for the
    full check (a model may declare keys of the train set), as top-level keys do."""
    if not isinstance(datasets, Mapping):
        return
    for phase, dataset_opt in datasets.items():
        if not isinstance(dataset_opt, Mapping) or not isinstance(dataset_opt.get('type'), str):
            continue
        declared = our_datasets().get(dataset_opt['type'])
        if declared is None:
            continue
        keys, nested = declared
        here = f'datasets:{phase}'
        loader = loader_keys('train' if phase == 'train' else 'val')  # what basicsr's loaders read, per phase
        _misspelt_keys(checker, dataset_opt, set(keys) | set(loader), here)
        for key, spec in loader.items():
            if key not in dataset_opt and spec.is_required(checker.is_train):
                checker.add(f'missing required key `{here}:{key}`')
        for key, entry_keys in nested.items():
            entries = dataset_opt.get(key)
            for i, entry in enumerate(entries if isinstance(entries, list) else ()):
                if isinstance(entry, Mapping):
                    _misspelt_keys(checker, entry, entry_keys, f'{here}:{key}[{i}]')


def _misspelt_model_keys(checker, opt, is_train):
    """A key of the ``train`` or ``val`` section that neither basicsr nor our ``model_type`` (its ``OPTIONS``, bases
    included) declares and that is close to a declared key the section lacks: ``train:grad_chekpoint``."""
    declared = our_models().get(opt.get('model_type'))
    if declared is None:
        return
    for section in ('train', 'val') if is_train else ('val',):
        node = opt.get(section)
        if isinstance(node, Mapping):
            _misspelt_keys(checker, node, set(BASICSR_OPTIONS[section]) | set(declared.get(section, ())), section)


def _misspelt_keys(checker, node, known, where):
    missing = [k for k in known if k not in node]
    for key in node:
        if key not in known:
            hint = closest_hint(key, missing)
            if hint:
                checker.add(f'unknown key `{_join(where, key)}`{hint}')


@functools.lru_cache(maxsize=1)
def our_architectures():
    """``{name: (argument names, takes **kwargs)}`` of the classes registered in ``promptir_basicsr/archs/*_arch.py``,
    read from the source files (``ast``), so the check needs neither torch nor basicsr. A class decorated with
    ``ARCH_REGISTRY.register()`` counts; its ``__init__``'s arguments are its options."""
    found = {}
    folder = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'archs')
    for path in sorted(glob.glob(osp.join(folder, '*_arch.py'))):
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), path)
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any('register' in ast.unparse(d) for d in node.decorator_list):
                init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == '__init__'), None)
                if init is not None:
                    names = [a.arg for a in init.args.args[1:] + init.args.kwonlyargs]
                    found[node.name] = (tuple(names), init.args.kwarg is not None)
    return found


@functools.lru_cache(maxsize=1)
def our_datasets():
    """``{name: (keys, {key: keys of each entry})}`` of the datasets registered in
    ``promptir_basicsr/data/*_dataset.py``: the keys of the class's ``OPTIONS``, read from the source files
    (``ast``; ``**NAME`` spreads are followed to module-level dicts, imported ones included), and for a key
    declared with ``items=NAME`` the keys of its entries."""
    folder = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'data')
    found = {}
    for path in sorted(glob.glob(osp.join(folder, '*_dataset.py'))):
        module = _SourceModule.read(path)
        for node in module.tree.body:
            if isinstance(node, ast.ClassDef) and any('register' in ast.unparse(d) for d in node.decorator_list):
                options = next((n.value for n in node.body if isinstance(n, ast.Assign)
                                and any(isinstance(t, ast.Name) and t.id == 'OPTIONS' for t in n.targets)), None)
                if isinstance(options, ast.Dict):
                    found[node.name] = module.dict_keys(options)
    return found


@functools.lru_cache(maxsize=1)
def our_models():
    """``{name: {section: keys}}`` of the models registered in ``promptir_basicsr/models/``: their ``OPTIONS``
    merged along their bases in the package (``AirNetModel`` reads ``AllInOneModel``'s keys too), read from the
    source files (``ast``), as :func:`our_architectures` does."""
    folder = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), 'models')
    classes, registered = {}, []
    for path in sorted(glob.glob(osp.join(folder, '*.py'))):
        module = _SourceModule.read(path)
        for node in module.tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            options = next((n.value for n in node.body if isinstance(n, ast.Assign)
                            and any(isinstance(t, ast.Name) and t.id == 'OPTIONS' for t in n.targets)), None)
            sections = {}
            if isinstance(options, ast.Dict):
                for section, keys in zip(options.keys, options.values):
                    if isinstance(section, ast.Constant) and isinstance(keys, ast.Dict):
                        sections[section.value] = module.dict_keys(keys)[0]
                    elif isinstance(section, ast.Constant) and isinstance(keys, ast.DictComp):
                        sections[section.value] = module.comprehension_keys(keys)
            classes[node.name] = ([ast.unparse(b) for b in node.bases], sections)
            if any('register' in ast.unparse(d) for d in node.decorator_list):
                registered.append(node.name)

    def merged(name):
        bases, sections = classes.get(name, ((), {}))
        result = {}
        for base in reversed(bases):
            for section, keys in merged(base).items():
                result[section] = result.get(section, ()) + keys
        for section, keys in sections.items():
            result[section] = result.get(section, ()) + keys
        return result

    return {name: merged(name) for name in registered}


class _SourceModule:
    """A module's source read with ``ast``: the key names of its module-level dict literals."""

    _cache = {}

    def __init__(self, path):
        with open(path, encoding='utf-8') as f:
            self.tree = ast.parse(f.read(), path)
        self.path = path

    @classmethod
    def read(cls, path):
        if path not in cls._cache:
            cls._cache[path] = cls(path)
        return cls._cache[path]

    def resolve(self, name):
        """The literal bound to ``name`` here, or in the module it is imported from (relative imports)."""
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return self, node.value
            if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module \
                    and any((a.asname or a.name) == name for a in node.names):
                other = osp.join(osp.dirname(self.path), *node.module.split('.')) + '.py'
                original = next(a.name for a in node.names if (a.asname or a.name) == name)
                return _SourceModule.read(other).resolve(original) if osp.isfile(other) else (None, None)
        return None, None

    def dict_keys(self, node):
        """(keys, {key: entry keys}) of a dict literal, ``**NAME`` spreads and ``Key(..., items=NAME)`` followed."""
        keys, nested = [], {}
        for key, value in zip(node.keys, node.values):
            if key is None and isinstance(value, ast.DictComp):  # **{key: ... for key in NAME}
                keys += self.comprehension_keys(value)
            elif key is None and isinstance(value, ast.Name):  # **NAME
                module, target = self.resolve(value.id)
                if isinstance(target, ast.Dict):
                    more, more_nested = module.dict_keys(target)
                    keys += more
                    nested.update(more_nested)
            elif isinstance(key, ast.Constant) and isinstance(key.value, str):
                keys.append(key.value)
                items = next((k.value for k in getattr(value, 'keywords', ()) if k.arg == 'items'), None)
                if isinstance(items, ast.Name):
                    module, target = self.resolve(items.id)
                    if isinstance(target, ast.Dict):
                        nested[key.value] = tuple(module.dict_keys(target)[0])
        return tuple(keys), nested

    def comprehension_keys(self, node):
        """The keys of ``{key: ... for key in NAME}`` where NAME is a tuple or list of strings (here or imported)."""
        loop = node.generators[0] if len(node.generators) == 1 else None
        if loop is None or not (isinstance(node.key, ast.Name) and isinstance(loop.target, ast.Name)
                                and node.key.id == loop.target.id):
            return ()
        values = loop.iter
        if isinstance(values, ast.Name):
            _, values = self.resolve(values.id)
        if not isinstance(values, (ast.Tuple, ast.List)):
            return ()
        return tuple(v.value for v in values.elts if isinstance(v, ast.Constant) and isinstance(v.value, str))


def _walk_data_paths(node, where):
    """(where, path) for every data path in a dataset option (roots, meta/list files), nested sources too."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(value, str) and (key.startswith('dataroot') or key in ('meta_info_file', 'list_file')):
                yield f'{where}:{key}', value
            elif isinstance(value, (Mapping, list)):
                yield from _walk_data_paths(value, f'{where}:{key}')
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk_data_paths(item, f'{where}[{i}]')


def path_problems(opt, unbuilt_root=None):
    """Data paths and checkpoint paths of ``opt`` that do not exist (not those under ``unbuilt_root``)."""
    problems = []
    unbuilt = osp.abspath(unbuilt_root) + os.sep if unbuilt_root else None
    datasets = opt.get('datasets')
    for phase, dataset_opt in (datasets.items() if isinstance(datasets, Mapping) else ()):
        for where, path in _walk_data_paths(dataset_opt, f'datasets:{phase}'):
            path = os.path.expanduser(path)
            if unbuilt and osp.abspath(path).startswith(unbuilt):
                continue
            if not os.path.exists(path):
                problems.append(f'{where}: {path} does not exist')
    paths = opt.get('path')
    for key, value in (paths.items() if isinstance(paths, Mapping) else ()):
        if (key.startswith('pretrain_network') or key == 'resume_state') and value:
            if not os.path.isfile(os.path.expanduser(str(value))):
                problems.append(f'path:{key}: {value} does not exist')
    return problems

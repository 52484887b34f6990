"""The option schema: what every key of an option file may be, declared once, by whoever reads it.

Where the declarations come from (nothing else is consulted, so there is no second list to keep in sync):

- **a class's signature** for everything that is built from its keys: ``network_g`` (the architecture's
  constructor), ``train:optim_g`` (the ``torch.optim`` class), ``train:scheduler``, ``train:*_opt`` (losses),
  ``val:metrics:*`` (metric functions) and the ops of ``degradation:`` lists. Names, required arguments
  (no default) and basic types (from the defaults) are checked; ``**kwargs`` accepts any other key. An
  architecture may add rules on the values with a classmethod ``option_problems(options) -> [str]``.
- **a class attribute** ``OPTIONS`` for classes that read their keys from an option dict:

  - a dataset: ``OPTIONS = {key: Key(...)}``, its own keys (``datasets:<phase>``); the loader keys basicsr
    reads for every dataset (batch size, workers, prefetching) are declared here once (:func:`loader_keys`);
  - a model: ``OPTIONS = {section: {key: Key(...)}}`` with sections ``''`` (the top level), ``'train'``,
    ``'val'``, ``'datasets:train'``; merged along the class's bases (a mixin declares its own);
  - a model may also define ``option_problems(opt, is_train) -> [str]`` for rules across keys.

- **this module's tables** for basicsr's own keys (:data:`BASICSR_OPTIONS`, :data:`BASICSR_DATASETS`), and
  :func:`register_known_keys` for a helper or plugin that reads a key without a class to declare it on.

:func:`collect_problems` walks an option dict with these declarations and returns every problem at once:
unknown keys (with the closest known name), missing required keys, wrong types and values, unknown
registry names. ``options.validate_options`` raises them as one :class:`OptionError`.
"""
import difflib
import inspect
import re
from collections.abc import Mapping

import torch

from .errors import UserError


class OptionError(UserError):
    """An option file that cannot run; the message names the file and every problem found."""


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
            return [f'`{where}` must be one of: {shown}; got {value!r}{_closest(value, self.choices)}']
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
_REGISTERED = {}  # section -> {key: Key()}, from register_known_keys


def register_known_keys(section, *keys):
    """Declare keys of ``section`` ('' for the top level, 'train', 'val', ...) read by code that has no
    class to declare them on (a plugin's helper, a patch); a class declares its own keys in ``OPTIONS``."""
    _REGISTERED.setdefault(section, {}).update({key: Key() for key in keys})


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


# basicsr's datasets cannot declare OPTIONS themselves; these are the keys their code reads.
BASICSR_DATASETS = {
    'PairedImageDataset': {
        'dataroot_gt': Key(str, required=True), 'dataroot_lq': Key(str, required=True),
        'io_backend': Key(dict, required=True), 'meta_info_file': Key(str, None), 'filename_tmpl': Key(str),
        'gt_size': Key(int, required='train'), 'use_hflip': Key(bool, required='train'),
        'use_rot': Key(bool, required='train'), 'color': Key(str, None, choices=('y', None)),
        'mean': Key(list, None), 'std': Key(list, None)},
    'SingleImageDataset': {
        'dataroot_lq': Key(str, required=True), 'io_backend': Key(dict, required=True),
        'meta_info_file': Key(str, None), 'color': Key(str, None, choices=('y', None)), 'mean': Key(list, None),
        'std': Key(list, None)},
}


def _registry_lookup(registry, name):
    """The registered object of ``name`` (basicsr's ``<name>_basicsr`` fallback too), or None."""
    if not isinstance(name, str):
        return None
    for key in (name, f'{name}_basicsr'):
        if key in registry:
            return registry.get(key)
    return None


def _closest(key, known):
    match = difflib.get_close_matches(str(key), [str(k) for k in known if k is not None], n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ''


def _join(where, key):
    return f'{where}:{key}' if where else str(key)


class Checker:
    """Collects the problems of one option dict; ``is_train`` selects the training-run requirements."""

    def __init__(self, opt, is_train):
        from basicsr.utils.registry import MODEL_REGISTRY
        self.opt, self.is_train, self.problems = opt, is_train, []
        self.model_cls = _registry_lookup(MODEL_REGISTRY, opt.get('model_type'))
        self.model_sections = declared_sections(self.model_cls)

    def add(self, message):
        if message not in self.problems:
            self.problems.append(message)

    def section(self, name):
        """The schema of a top-level section: basicsr's keys, registered keys, the model's declaration."""
        return {**BASICSR_OPTIONS.get(name, {}), **_REGISTERED.get(name, {}), **self.model_sections.get(name, {})}

    def mapping(self, node, schema, where, train=None, owner=None, is_open=False):
        """Unknown, missing, mistyped keys of ``node`` against ``schema``; then each Key's nested check."""
        train = self.is_train if train is None else train
        unmatched = []  # unknown keys without a close known name: one problem listing what is known
        for key, value in node.items():
            spec = schema.get(key)
            if spec is None:
                hint = _closest(key, schema)
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

    def registry_name(self, where, name, registry, kind):
        """True when ``name`` is registered; otherwise one problem listing the known names."""
        if name is None:
            self.add(f'{where}: missing `type` ({kind})')
            return False
        if _registry_lookup(registry, name) is not None:
            return True
        known = sorted({k[:-len('_basicsr')] if k.endswith('_basicsr') else k for k in registry.keys()})
        self.add(f'{where}: unknown {kind} {name!r}{_closest(name, known)}; known: {", ".join(known)}. A plugin '
                 'module listed under `plugins:` can register more.')
        return False

    def call(self, node, where, function, skip=(), owner=None, extra=None):
        """The keys of ``node`` (besides ``type``) against ``function``'s signature."""
        try:
            schema, is_open = signature_schema(function, skip=skip)
        except (TypeError, ValueError):  # no introspectable signature (a C extension): nothing to check
            return
        schema = {'type': Key(str, required=True), **schema, **(extra or {})}
        self.mapping(node, schema, where, owner=owner, is_open=is_open)


# ---- checks of the sections whose keys come from a class named inside them -------------------------------
def _check_model_type(checker, value, where):
    from basicsr.utils.registry import MODEL_REGISTRY
    checker.registry_name(where, value, MODEL_REGISTRY, 'model')


def _check_network(checker, node, where):
    """The keys against the architecture's constructor; then its value rules, when the class has them
    (``option_problems(options) -> [str]``, e.g. PromptIR's prompt levels)."""
    from basicsr.utils.registry import ARCH_REGISTRY
    name = node.get('type')
    if checker.registry_name(f'{where}:type', name, ARCH_REGISTRY, 'architecture'):
        arch = _registry_lookup(ARCH_REGISTRY, name)
        before = len(checker.problems)
        checker.call(node, where, arch, owner=name)
        rules = getattr(arch, 'option_problems', None)
        if rules is not None and len(checker.problems) == before:
            for message in rules(node):
                checker.add(f'{where}: {message}')


def _check_num_gpu(checker, value, where):
    cuda_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if value == 'auto':
        return
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        checker.add(f'`num_gpu` must be `auto` or a whole number >= 0, got {value!r}')
    elif value > cuda_count:
        checker.add(f'`num_gpu: {value}` but this machine has {cuda_count} CUDA device(s); use `num_gpu: auto` '
                    f'({"the CPU" if cuda_count == 0 else cuda_count} here)')


def _check_optimizer(checker, node, where):
    name = node.get('type')
    cls = getattr(torch.optim, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        known = sorted(n for n, c in vars(torch.optim).items() if isinstance(c, type)
                       and issubclass(c, torch.optim.Optimizer) and c is not torch.optim.Optimizer)
        checker.add(f'{where}:type: unknown optimizer {name!r}{_closest(name, known)}; a torch.optim class: '
                    f'{", ".join(known)}')
        return
    checker.call(node, where, cls, skip=('params', ), owner=name)


def _check_scheduler(checker, node, where):
    from .models.schedulers import scheduler_class
    name = node.get('type')
    cls = scheduler_class(name)
    if cls is None:
        from .models.schedulers import SCHEDULERS
        checker.add(f'{where}:type: unknown scheduler {name!r}{_closest(name, SCHEDULERS)}; known: '
                    f'{", ".join(SCHEDULERS)}, or a class of torch.optim.lr_scheduler')
        return
    checker.call(node, where, cls, skip=('optimizer', 'last_epoch', 'verbose'), owner=name)


def _check_loss(checker, node, where):
    from basicsr.utils.registry import LOSS_REGISTRY
    name = node.get('type')
    if checker.registry_name(f'{where}:type', name, LOSS_REGISTRY, 'loss'):
        checker.call(node, where, _registry_lookup(LOSS_REGISTRY, name), owner=name)


def _check_metrics(checker, node, where):
    from basicsr.utils.registry import METRIC_REGISTRY
    for metric, metric_opt in node.items():
        here = _join(where, metric)
        if not isinstance(metric_opt, Mapping):
            checker.add(f'`{here}` must be a mapping like {{type: calculate_psnr, crop_border: 0}}')
            continue
        name = metric_opt.get('type')
        if checker.registry_name(f'{here}:type', name, METRIC_REGISTRY, 'metric'):
            # basicsr passes the images as img/img2; `better` (higher|lower) is read by its best-metric records
            checker.call(metric_opt, here, _registry_lookup(METRIC_REGISTRY, name), skip=('img', 'img2'), owner=name,
                         extra={'better': Key(str, choices=('higher', 'lower'))})


def _check_train(checker, node, where):
    """Every ``*_opt`` of the train section is a loss (basicsr's convention: pixel_opt, perceptual_opt, ...)."""
    if not checker.is_train:
        return
    for key, value in node.items():
        if key.endswith('_opt') and isinstance(value, Mapping):
            _check_loss(checker, value, _join(where, key))


def _check_degradations(checker, node, where):
    from .data.degradations import DEGRADATION_REGISTRY, build_pipeline
    if not isinstance(node, (list, tuple)):
        return
    known = True
    for i, op in enumerate(node):
        op_type = op.get('type') if isinstance(op, Mapping) else None
        known = checker.registry_name(f'{where}[{i}]', op_type, DEGRADATION_REGISTRY, 'degradation') and known
    if known:
        try:  # parameter names (from each op's signature) and value specs, as the dataset will check them
            build_pipeline(node, where)
        except (KeyError, ValueError) as err:
            checker.add(str(err).strip('"'))


def _check_datasets(checker, node, where):
    from basicsr.utils.registry import DATASET_REGISTRY
    if not node:
        checker.add('`datasets` must map phases (train, val_1, test_1, ...) to dataset options')
    for phase, dataset_opt in node.items():
        here = _join(where, phase)
        kind = str(phase).split('_')[0]  # basicsr's rule: val_1 -> val
        if checker.is_train and kind not in ('train', 'val'):
            checker.add(f"{here}: a training run's phases are `train` and `val*`")
        if not isinstance(dataset_opt, Mapping):
            checker.add(f'{here}: expected a mapping of dataset options')
            continue
        for where_deg, ops in _walk_key(dataset_opt, 'degradation', here):
            _check_degradations(checker, ops, where_deg)
        name = dataset_opt.get('type')
        if not checker.registry_name(f'{here}:type', name, DATASET_REGISTRY, 'dataset'):
            continue
        cls = _registry_lookup(DATASET_REGISTRY, name)
        declared = getattr(cls, 'OPTIONS', None) or BASICSR_DATASETS.get(name)
        schema = {**loader_keys(kind), **(declared or {})}
        if kind == 'train':
            schema.update(checker.model_sections.get('datasets:train', {}))
        checker.mapping(dataset_opt, schema, here, train=kind == 'train', owner=name, is_open=declared is None)
        workers = dataset_opt.get('num_worker_per_gpu', 0) if kind == 'train' else 0
        if dataset_opt.get('persistent_workers') and not workers:
            checker.add(f'`{here}:persistent_workers: true` needs loader workers, but this set is loaded in the '
                        'main process (`num_worker_per_gpu: 0`; basicsr always does so for val/test sets): '
                        'remove it')


def _walk_key(node, wanted, where):
    """(where, value) for every ``wanted`` key in nested mappings and lists."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key == wanted:
                yield _join(where, key), value
            elif isinstance(value, (Mapping, list, tuple)):
                yield from _walk_key(value, wanted, _join(where, key))
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _walk_key(item, wanted, f'{where}[{i}]')


# basicsr 1.4.2's own keys, per section ('' is the top level), with their types.
_NUMBER = float
BASICSR_OPTIONS = {
    '': {
        'name': Key(str, required=True), 'model_type': Key(str, required=True, check=_check_model_type),
        'scale': Key(int), 'num_gpu': Key(check=_check_num_gpu), 'manual_seed': Key(int, None),
        'datasets': Key(dict, required=True, check=_check_datasets),
        'network_g': Key(dict, required=True, check=_check_network), 'network_d': Key(dict, check=_check_network),
        'path': Key(dict, required=True), 'train': Key(dict, required='train', check=_check_train),
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
        'metrics': Key(dict, None, check=_check_metrics), 'pbar': Key(bool, None),
        # basicsr's video models
        'center_frame_only': Key(bool), 'flip_seq': Key(bool), 'num_val_samples': Key(int)},
    'train': {
        'optim_g': Key(dict, required=True, check=_check_optimizer), 'optim_d': Key(dict, check=_check_optimizer),
        'scheduler': Key(dict, None, check=_check_scheduler), 'total_iter': Key(_NUMBER, required=True),
        'warmup_iter': Key(_NUMBER), 'pixel_opt': Key(dict, None), 'perceptual_opt': Key(dict, None),
        'gan_opt': Key(dict, None), 'ema_decay': Key(_NUMBER), 'net_d_iters': Key(int), 'net_d_init_iters': Key(int)},
    'dist_params': {'backend': Key(str), 'port': Key(int)},
}
_SECTIONS = ('path', 'logger', 'val', 'train', 'dist_params')


def collect_problems(opt, is_train=True):
    """Every problem of the options ``opt`` against the declarations (see the module docstring)."""
    checker = Checker(opt, is_train)
    checker.mapping(opt, checker.section(''), '')
    for name in _SECTIONS:
        node = opt.get(name)
        if name == 'train' and not is_train:
            continue
        if isinstance(node, Mapping):
            checker.mapping(node, checker.section(name), name)
    rules = getattr(checker.model_cls, 'option_problems', None)
    if rules is not None:
        try:
            found = rules(opt, is_train)
        except (KeyError, TypeError, ValueError, AttributeError):
            found = []  # the rules assume well-formed keys; the problems above already say what is wrong
        for message in found:
            checker.add(message)
    return checker.problems

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

- **tables** for basicsr's own keys (``options/checker.py``: ``BASICSR_OPTIONS``; here :data:`BASICSR_DATASETS`),
  and :func:`~promptir_basicsr.utils.option_keys.register_known_keys` for a helper or plugin that reads a key without a class to declare it on.

:func:`collect_problems` walks an option dict with these declarations and returns every problem at once:
unknown keys (with the closest known name), missing required keys, wrong types and values, unknown
registry names. ``options.prepare.validate_options`` raises them as one :class:`OptionError`.
"""
from collections.abc import Mapping

import torch
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY

from ..data.degradations import DEGRADATION_REGISTRY, build_pipeline
from ..models.schedulers import SCHEDULERS, scheduler_class
from ..utils.option_keys import Key, closest_hint, declared_sections, loader_keys, registered_keys, signature_schema
from .checker import BASICSR_OPTIONS, SECTIONS, Checker, _join


def registry_lookup(registry, name):
    """The registered object of ``name`` (basicsr's ``<name>_basicsr`` fallback too), or None."""
    if not isinstance(name, str):
        return None
    for key in (name, f'{name}_basicsr'):
        if key in registry:
            return registry.get(key)
    return None


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


class SchemaChecker(Checker):
    """:class:`~.checker.Checker` with what the full check knows: the model class (its declared keys and rules)
    and basicsr's registries."""

    def __init__(self, opt, is_train):
        super().__init__(opt, is_train)
        self.model_cls = registry_lookup(MODEL_REGISTRY, opt.get('model_type'))
        self.model_sections = declared_sections(self.model_cls)

    def section(self, name):
        """The schema of a top-level section: basicsr's keys (with their nested checks), registered keys, the
        model's declaration."""
        basicsr_keys = {key: _with_check(spec, SECTION_CHECKS.get((name, key)))
                        for key, spec in BASICSR_OPTIONS.get(name, {}).items()}
        return {**basicsr_keys, **registered_keys(name), **self.model_sections.get(name, {})}

    def registry_name(self, where, name, registry, kind):
        """True when ``name`` is registered; otherwise one problem listing the known names."""
        if name is None:
            self.add(f'{where}: missing `type` ({kind})')
            return False
        if registry_lookup(registry, name) is not None:
            return True
        known = sorted({k[:-len('_basicsr')] if k.endswith('_basicsr') else k for k in registry.keys()})
        self.add(f'{where}: unknown {kind} {name!r}{closest_hint(name, known)}; known: {", ".join(known)}. A plugin '
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


def _with_check(spec, check):
    """``spec`` with the nested ``check`` of its section (none: ``spec`` itself)."""
    if check is None:
        return spec
    return Key(*spec.types, required=spec.required, choices=spec.choices, items=spec.items, check=check)


# ---- checks of the sections whose keys come from a class named inside them -------------------------------
def _check_model_type(checker, value, where):
    checker.registry_name(where, value, MODEL_REGISTRY, 'model')


def _check_network(checker, node, where):
    """The keys against the architecture's constructor; then its value rules, when the class has them
    (``option_problems(options) -> [str]``, e.g. PromptIR's prompt levels)."""
    name = node.get('type')
    if checker.registry_name(f'{where}:type', name, ARCH_REGISTRY, 'architecture'):
        arch = registry_lookup(ARCH_REGISTRY, name)
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
        checker.add(f'{where}:type: unknown optimizer {name!r}{closest_hint(name, known)}; a torch.optim class: '
                    f'{", ".join(known)}')
        return
    checker.call(node, where, cls, skip=('params', ), owner=name)


def _check_scheduler(checker, node, where):
    name = node.get('type')
    cls = scheduler_class(name)
    if cls is None:
        checker.add(f'{where}:type: unknown scheduler {name!r}{closest_hint(name, SCHEDULERS)}; known: '
                    f'{", ".join(SCHEDULERS)}, or a class of torch.optim.lr_scheduler')
        return
    checker.call(node, where, cls, skip=('optimizer', 'last_epoch', 'verbose'), owner=name)


def _check_loss(checker, node, where):
    name = node.get('type')
    if checker.registry_name(f'{where}:type', name, LOSS_REGISTRY, 'loss'):
        checker.call(node, where, registry_lookup(LOSS_REGISTRY, name), owner=name)


def _check_metrics(checker, node, where):
    for metric, metric_opt in node.items():
        here = _join(where, metric)
        if not isinstance(metric_opt, Mapping):
            checker.add(f'`{here}` must be a mapping like {{type: calculate_psnr, crop_border: 0}}')
            continue
        name = metric_opt.get('type')
        if checker.registry_name(f'{here}:type', name, METRIC_REGISTRY, 'metric'):
            # basicsr passes the images as img/img2; `better` (higher|lower) is read by its best-metric records
            checker.call(metric_opt, here, registry_lookup(METRIC_REGISTRY, name), skip=('img', 'img2'), owner=name,
                         extra={'better': Key(str, choices=('higher', 'lower'))})


def _check_train(checker, node, where):
    """Every ``*_opt`` of the train section is a loss (basicsr's convention: pixel_opt, perceptual_opt, ...)."""
    if not checker.is_train:
        return
    for key, value in node.items():
        if key.endswith('_opt') and isinstance(value, Mapping):
            _check_loss(checker, value, _join(where, key))


def _check_degradations(checker, node, where):
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
    if not node:
        checker.add('`datasets` must map phases (train, val_1, test_1, ...) to dataset options')
    for phase, dataset_opt in node.items():
        here = _join(where, phase)
        kind = str(phase).split('_')[0]  # basicsr's rule: val_1 -> val
        # basicsr's train loop builds the set named `train` and those named val*; any other phase stops it with
        # a ValueError after the experiment folder is made (train_2 too, though its kind reads `train`)
        if checker.is_train and phase != 'train' and kind != 'val':
            checker.add(f"{here}: a training run's phases are `train` and `val*`")
        if not isinstance(dataset_opt, Mapping):
            checker.add(f'{here}: expected a mapping of dataset options')
            continue
        for where_deg, ops in _walk_key(dataset_opt, 'degradation', here):
            _check_degradations(checker, ops, where_deg)
        name = dataset_opt.get('type')
        if not checker.registry_name(f'{here}:type', name, DATASET_REGISTRY, 'dataset'):
            continue
        cls = registry_lookup(DATASET_REGISTRY, name)
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


#: the nested checks of basicsr's own keys: (section, key) -> check(checker, value, where)
SECTION_CHECKS = {
    ('', 'model_type'): _check_model_type, ('', 'num_gpu'): _check_num_gpu, ('', 'datasets'): _check_datasets,
    ('', 'network_g'): _check_network, ('', 'network_d'): _check_network, ('', 'train'): _check_train,
    ('val', 'metrics'): _check_metrics, ('train', 'optim_g'): _check_optimizer, ('train', 'optim_d'): _check_optimizer,
    ('train', 'scheduler'): _check_scheduler,
}


def collect_problems(opt, is_train=True):
    """Every problem of the options ``opt`` against the declarations (see the module docstring)."""
    checker = SchemaChecker(opt, is_train)
    checker.mapping(opt, checker.section(''), '')
    for name in SECTIONS:
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

"""Degradation library: small pure functions registered by name, and pipelines built from options.

Every op has the signature ``op(img, rng, **params) -> img``:

- ``img``: float32 HxWx3 RGB array in [0, 1] (never modified in place);
- ``rng``: a ``numpy.random.Generator``; all randomness of the op comes from it, so the output is a
  deterministic function of (img, rng state, params);
- returns a new float32 HxWx3 RGB array in [0, 1] of the same size.

Ops live one module per family (``noise.py``, ``blur.py``, ``jpeg.py``, ``weather.py``, ``light.py``);
``promptir_basicsr`` imports every module of this folder, so a new file registers itself. A user's
own op registers the same way from a module named in the option file's ``plugins:`` list::

    from promptir_basicsr.data.degradations import DEGRADATION_REGISTRY

    @DEGRADATION_REGISTRY.register()
    def salt_and_pepper(img, rng, amount=0.05):
        ...

In an option file a pipeline is a list of ops applied in order, each ``{type: <name>, <param>: <spec>}``
where a parameter spec is

- a value (``sigma: 25``),
- a ``[low, high]`` range, drawn uniformly per sample (integers from ``low`` to ``high`` inclusive
  when both ends are ints, floats in [low, high) otherwise),
- ``{choice: [v1, v2, ...]}``, one of the values drawn uniformly per sample.

:func:`build_pipeline` checks op names and parameter names when the dataset is built (errors list
the known names), so a typo fails before training starts.
"""
import inspect
import numbers

import numpy as np
from basicsr.utils.registry import Registry

DEGRADATION_REGISTRY = Registry('degradation')

__all__ = ['DEGRADATION_REGISTRY', 'DegradationPipeline', 'build_pipeline', 'known_degradations', 'resolve_param']


def known_degradations():
    """Names of every registered op, sorted."""
    return sorted(DEGRADATION_REGISTRY.keys())


def _check_spec(spec, where):
    if isinstance(spec, dict):
        if set(spec) != {'choice'} or not isinstance(spec['choice'], (list, tuple)) or not spec['choice']:
            raise ValueError(f'{where}: a parameter given as a mapping must be {{choice: [v1, v2, ...]}} '
                             f'with at least one value, got {spec!r}')
    elif isinstance(spec, (list, tuple)):
        if len(spec) != 2 or not all(isinstance(v, numbers.Real) for v in spec):
            raise ValueError(f'{where}: a list parameter means a [low, high] numeric range, got {spec!r}; '
                             'use {choice: [...]} to pick among values')
        if spec[0] > spec[1]:
            raise ValueError(f'{where}: range [low, high] has low > high: {spec!r}')


def resolve_param(spec, rng):
    """One value from a parameter spec: a value, a ``[low, high]`` range or ``{choice: [...]}``."""
    if isinstance(spec, dict):
        values = spec['choice']
        return values[int(rng.integers(len(values)))]
    if isinstance(spec, (list, tuple)):
        low, high = spec
        if isinstance(low, numbers.Integral) and isinstance(high, numbers.Integral):
            return int(rng.integers(low, high + 1))
        return float(rng.uniform(low, high))
    return spec


def _short(value):
    if isinstance(value, float):
        value = f'{value:g}'
    return str(value).replace('.', 'p').replace('-', 'm')


def _describe_spec(spec):
    if isinstance(spec, dict):
        return 'or'.join(_short(v) for v in spec['choice'])
    if isinstance(spec, (list, tuple)):
        return f'{_short(spec[0])}to{_short(spec[1])}'
    return _short(spec)


class DegradationPipeline:
    """A list of registered ops with parameter specs; ``pipeline(img, rng)`` applies them in order.

    ``sample(rng)`` resolves every parameter spec once, ``apply(img, rng, resolved)`` runs the ops with
    those values: two crops degraded with the same resolved values share one degradation level
    (AirNet's positive pairs).
    """

    def __init__(self, steps, where='degradation'):
        self.steps = steps  # list of (name, function, {param: spec})
        self.where = where

    def __len__(self):
        return len(self.steps)

    @property
    def names(self):
        return [name for name, _, _ in self.steps]

    def sample(self, rng):
        return [{key: resolve_param(spec, rng) for key, spec in params.items()} for _, _, params in self.steps]

    def apply(self, img, rng, resolved=None):
        if resolved is None:
            resolved = self.sample(rng)
        for (name, func, _), params in zip(self.steps, resolved):
            img = func(img, rng, **params)
            if not isinstance(img, np.ndarray) or img.ndim != 3:
                raise TypeError(f'{self.where}: degradation {name!r} must return an HxWxC array, got '
                                f'{type(img).__name__} {getattr(img, "shape", "")}')
            img = np.clip(img, 0, 1).astype(np.float32, copy=False)
        return img

    def __call__(self, img, rng):
        return self.apply(img, rng)

    def describe(self):
        """A short file-name-safe text naming the ops and their parameters, e.g. ``gaussian_noise_sigma25``."""
        parts = []
        for name, _, params in self.steps:
            parts.append('_'.join([name] + [f'{key}{_describe_spec(spec)}' for key, spec in params.items()]))
        text = '+'.join(parts)
        return ''.join(ch if ch.isalnum() or ch in '_+-' else '_' for ch in text)

    def __repr__(self):
        return f'DegradationPipeline({[(name, params) for name, _, params in self.steps]})'


def build_pipeline(op_list, where='degradation'):
    """A :class:`DegradationPipeline` from an option list ``[{type: name, <param>: <spec>}, ...]``.

    ``where`` names the option (e.g. ``datasets.train.sources[2] (noise15).degradation``) in errors.
    Raises ``KeyError`` for an unknown op (listing the known ones) and ``ValueError`` for a malformed
    entry or a parameter the op does not take (listing the ones it takes).
    """
    if isinstance(op_list, dict):
        op_list = [op_list]
    if not isinstance(op_list, (list, tuple)) or not op_list:
        raise ValueError(f'{where}: expected a non-empty list of ops like [{{type: gaussian_noise, sigma: 25}}], '
                         f'got {op_list!r}')
    steps = []
    for i, entry in enumerate(op_list):
        here = f'{where}[{i}]'
        if not isinstance(entry, dict) or 'type' not in entry:
            raise ValueError(f'{here}: each op must be a mapping with a `type` key, got {entry!r}')
        name = entry['type']
        if name not in DEGRADATION_REGISTRY:
            raise KeyError(f'{here}: unknown degradation type {name!r}. Known degradations: '
                           f'{", ".join(known_degradations())}. A new one can be registered with '
                           '@DEGRADATION_REGISTRY.register() in a module listed under `plugins:`.')
        func = DEGRADATION_REGISTRY.get(name)
        params = {key: value for key, value in entry.items() if key != 'type'}
        signature = inspect.signature(func)
        accepted = [p.name for p in list(signature.parameters.values())[2:]
                    if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        takes_kwargs = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
        for key, spec in params.items():
            if key not in accepted and not takes_kwargs:
                raise ValueError(f'{here}: degradation {name!r} has no parameter {key!r}; '
                                 f'it takes: {", ".join(accepted) or "(none)"}')
            _check_spec(spec, f'{here}.{key}')
        steps.append((name, func, params))
    return DegradationPipeline(steps, where=where)

"""Option files: from the YAML a user wrote to the options basicsr runs with.

- :mod:`.files`: reading a file, ``--force_yml``, ``plugins:``, writing options back as YAML (no torch needed).
- :mod:`.checker`: the checks that need only the file (basicsr's keys, paths): answered before torch loads.
- :mod:`.schema`: the full check against every declaration (architectures, models, datasets, losses, ...).
- :mod:`.prepare`: what happens before and right after basicsr parses a run's options.

A plugin declares the keys it reads with :class:`~promptir_basicsr.utils.option_keys.Key` (on its class) or
:func:`~promptir_basicsr.utils.option_keys.register_known_keys`, both re-exported here.
"""
from ..errors import OptionError  # noqa: F401 (the API for plugins)
from ..utils.option_keys import Key, register_known_keys  # noqa: F401

"""``python -m promptir_basicsr ...`` is the ``basicsr`` command."""
import sys

from .cli import main

sys.exit(main())

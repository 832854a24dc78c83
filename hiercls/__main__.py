"""``python -m hiercls`` is the ``hiercls`` command."""

import sys

from .cli import main

sys.exit(main())

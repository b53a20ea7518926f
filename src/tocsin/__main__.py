"""``python -m tocsin``: the ``tocsin`` command (see ``tocsin._cli``)."""

import sys

from ._cli import main

sys.exit(main())

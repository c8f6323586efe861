"""``python -m spotlight_cli``: the ``spotlight`` command."""

import sys

from . import main

sys.exit(main())

"""``python -m smoothlab.lab``: the same as the ``smoothlab`` command."""

import sys

from smoothlab.lab.cli import main

sys.exit(main())

"""``python -m smoothlab.lab``: the same as the ``smoothlab`` command."""

from smoothlab.lab.cli import console

console()

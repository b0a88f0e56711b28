"""Sub-command modules of the ``edgesr`` CLI (see :mod:`edgesr.cli`)."""

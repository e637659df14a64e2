"""``python -m node`` is the ``qnode`` command."""

from node.cli import main

main()

"""``python -m receiver.cli``: the same as the ``remediator`` console script."""

from receiver.cli import main

main()

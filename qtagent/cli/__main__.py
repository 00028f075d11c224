"""python -m qtagent.cli: the same as the qtagent command."""

from qtagent.cli.main import main

main()

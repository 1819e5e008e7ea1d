"""``python -m motia_state.cli``: the same as the ``motia-state`` script."""

from . import main

main()

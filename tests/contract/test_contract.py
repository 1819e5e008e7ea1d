"""The behaviour suite of ``motia_state.testing.contract``, collected here for every backend (see conftest)."""

from motia_state.testing.contract import *  # noqa: F403

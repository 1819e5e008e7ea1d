"""motia-state's behaviour suite: ``from motia_state.testing.contract import *`` in a test module runs it on the
store of the ``motia_state_factory`` fixture (see :mod:`motia_state.testing`)."""

import inspect as _inspect

import pytest as _pytest

from .test_browse import *  # noqa: F403
from .test_changes import *  # noqa: F403
from .test_filters import *  # noqa: F403
from .test_operations import *  # noqa: F403
from .test_paging import *  # noqa: F403
from .test_triggers import *  # noqa: F403
from .test_ttl import *  # noqa: F403
from .test_update import *  # noqa: F403
from .test_values import *  # noqa: F403

# Marked here, on the functions themselves, so the suite runs under pytest-asyncio's strict mode too (and the
# marks travel with ``import *``, as a module's pytestmark would not).
for _name, _test in list(globals().items()):
    if _name.startswith("test_") and _inspect.iscoroutinefunction(_test):
        _pytest.mark.asyncio(_test)

"""motia-state's behaviour suite: ``from motia_state.testing.contract import *`` in a test module runs it on the
store of the ``motia_state_factory`` fixture (see :mod:`motia_state.testing`)."""

from .test_filters import *  # noqa: F403
from .test_operations import *  # noqa: F403
from .test_paging import *  # noqa: F403
from .test_ttl import *  # noqa: F403
from .test_update import *  # noqa: F403
from .test_values import *  # noqa: F403

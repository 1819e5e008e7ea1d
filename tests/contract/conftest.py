"""The contract suite runs through the ``motia_state.testing`` plugin, on every built-in backend and on the
reference's five-method custom adapter (so the StateAdapter defaults meet the same behaviour tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from motia_state import StateManager
from motia_state.testing import ALL_CAPABILITIES, StoreFactory, make_store, state
from tests.conftest import FACTORIES, MARKS, make_redis_motia
from tests.test_custom_adapter import FiveMethodAdapter
from tests.topologies.postgres import make_pg_schema, make_pgbouncer
from tests.topologies.redis import make_redis_cluster, make_redis_tls

__all__ = ["make_store", "state"]  # the plugin's fixtures, over the root conftest's four-backend ones


async def make_custom(tmp_path: Path, **options: Any) -> StateManager:
    return StateManager(FiveMethodAdapter(), **options)


CONTRACT_FACTORIES: dict[str, StoreFactory] = {**FACTORIES, "redis-motia": make_redis_motia, "custom": make_custom}
# The production topologies of SPEC §12: the whole contract suite runs on each.
CONTRACT_FACTORIES.update(
    {
        "postgres-pgbouncer": make_pgbouncer,
        "postgres-schema": make_pg_schema,
        "redis-cluster": make_redis_cluster,
        "redis-tls": make_redis_tls,
    }
)
# The five reference methods: no ttl, no listing, clear/cleanup report nothing.
# Redis in the motia layout: expired strings vanish by themselves, so cleanup() has nothing to count.
# A Redis Cluster keeps one change feed per scope: no watch()/revision() of every scope.
CAPABILITIES = {
    "custom": frozenset(),
    "redis-motia": ALL_CAPABILITIES - {"cleanup_counts", "changes", "changes_all_scopes", "triggers"},
    "redis-cluster": ALL_CAPABILITIES - {"changes_all_scopes"},
}


@pytest.fixture(params=[pytest.param(name, marks=MARKS.get(name.split("-")[0], [])) for name in CONTRACT_FACTORIES])
def backend(request: pytest.FixtureRequest) -> str:
    """The backend under test (the four built-ins and the five-method custom adapter)."""
    return str(request.param)


@pytest.fixture
def motia_state_factory(backend: str) -> StoreFactory:
    return CONTRACT_FACTORIES[backend]


@pytest.fixture
def motia_state_capabilities(backend: str) -> frozenset[str]:
    return CAPABILITIES.get(backend, ALL_CAPABILITIES)

"""The real Motia SDK for these tests, and a stand-in for the iii engine built from the SDK's own client.

The SDK is the optional extra ``motia`` (pinned in pyproject.toml). Without it the tests that need it skip,
except under CI=true, where they fail: CI installs the extra, so a missing SDK there is a broken set-up.
"""

from __future__ import annotations

import importlib
import itertools
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from motia_state import StateManager
from motia_state.motia import MotiaState
from tests.services import IN_CI

# What the extra pins; the message tells a developer how to get it.
SDK_PINS = "motia==1.0.2rc1 iii-sdk==0.8.3"


def import_sdk() -> ModuleType:
    """The ``motia`` package, or skip (laptop) / fail (CI=true) when it cannot be imported."""
    try:
        with warnings.catch_warnings():
            # motia 1.0.2rc1 declares a pydantic field named "schema", and pydantic warns about it on import.
            warnings.filterwarnings("ignore", message='Field name "schema"', category=UserWarning)
            return importlib.import_module("motia")
    except ImportError as exc:
        reason = f"the Motia SDK does not import ({exc}); install it with: pip install -e '.[motia]' ({SDK_PINS})"
        if IN_CI:
            pytest.fail(f"CI=true requires the Motia SDK: {reason}", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def sdk() -> ModuleType:
    """The imported ``motia`` package."""
    return import_sdk()


@pytest.fixture(autouse=True)
def _sdk_runtime_manager(sdk: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    # A docs example swaps ``motia.runtime.stateManager`` for the whole process; that must not leak here.
    monkeypatch.setattr(importlib.import_module("motia.runtime"), "stateManager", sdk.stateManager)


class Engine:
    """Plays the iii engine's part towards a real, never connected ``iii.III`` client.

    ``Motia.add_step`` registers each trigger's function on the client. The engine runs one by sending an
    ``invokefunction`` message, which the client hands to ``III._handle_invoke``; the answer goes back as an
    ``invocationresult`` message, which an unconnected client keeps in its outgoing queue. Calling that
    method here runs the SDK's whole path: its trigger wrapper, its FlowContext, then the step handler.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self._ids = itertools.count(1)

    def function_ids(self) -> list[str]:
        return sorted(self.client._functions)

    async def invoke(self, function_id: str, data: Any) -> Any:
        """Invoke a registered function as the engine does; return its result or raise with its error."""
        invocation_id = f"test-{next(self._ids)}"
        await self.client._handle_invoke(invocation_id, function_id, data)
        answers = [m for m in self.client._queue if m.get("invocation_id") == invocation_id]
        assert len(answers) == 1, f"no single answer to {invocation_id}: {self.client._queue}"
        answer = answers[0]
        assert answer["type"] == "invocationresult", answer
        if "error" in answer:
            raise AssertionError(f"{function_id} failed: {answer['error']}")
        return answer.get("result")


@pytest.fixture
def engine(sdk: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """A fresh SDK client installed as motia's singleton, so steps registered in a test stay in it."""
    client = importlib.import_module("iii").III("ws://127.0.0.1:9")  # never connected: no engine is needed
    monkeypatch.setattr(importlib.import_module("motia.iii"), "_instance", client)
    return Engine(client)


@pytest.fixture(params=["memory", "sqlite"])
async def manager(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StateManager]:
    """An empty StateManager on memory:// or on a fresh SQLite file."""
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 's.db'}"
    state = StateManager.from_url(url)
    try:
        yield state
    finally:
        await state.close()


@pytest.fixture
def store(manager: StateManager) -> MotiaState:
    """The same store seen through Motia's protocol."""
    return MotiaState(manager)

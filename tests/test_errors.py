"""SPEC §8: the error tree and password masking."""

from __future__ import annotations

import pytest

from motia_state import (
    SchemaOutOfDateError,
    StateBackendError,
    StateConfigError,
    StateError,
    StateKeyError,
    StateValueError,
    UpdateOpError,
)
from motia_state.errors import mask_secrets, mask_url


@pytest.mark.parametrize(
    "cls", [StateKeyError, StateValueError, UpdateOpError, StateConfigError, SchemaOutOfDateError, StateBackendError]
)
def test_every_error_is_a_state_error(cls: type[Exception]) -> None:
    assert issubclass(cls, StateError)


def test_key_and_value_errors_are_value_errors() -> None:
    assert issubclass(StateKeyError, ValueError) and issubclass(StateValueError, ValueError)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://user:secret@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("redis://:secret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://default:s%40cret@host/1", "rediss://default:***@host/1"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("sqlite:///path/to.db", "sqlite:///path/to.db"),
        ("postgresql://u:pw@[::1]:5432/db?sslmode=require", "postgresql://u:***@[::1]:5432/db?sslmode=require"),
        # A URL given as a query value (listen_url), percent-encoded: its password too.
        (
            "postgresql://u:pw@h/db?listen_url=postgresql%3A%2F%2Fu%3Asecret%40h2%2Fdb",
            "postgresql://u:***@h/db?listen_url=postgresql%3A%2F%2Fu%3A***%40h2%2Fdb",
        ),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_url_hides_an_unencoded_url_in_the_query() -> None:
    assert "secret" not in mask_url("postgresql://h/db?listen_url=postgresql://u:secret@h2/db")


def test_backend_error_masks_password_everywhere() -> None:
    url = "postgresql://user:s%40cret@host/db"
    err = StateBackendError(
        "could not log in with s@cret to postgresql://user:s%40cret@host/db", backend="postgres", url=url
    )
    for text in (str(err), repr(err), err.url):
        assert "s@cret" not in text and "s%40cret" not in text
    assert "postgres" in str(err) and "host" in str(err)
    assert mask_secrets("dsn=redis://u:topsecret@h/0") == "dsn=redis://u:***@h/0"


def test_schema_error_names_the_command() -> None:
    err = SchemaOutOfDateError("schema is behind", command="motia-state migrate")
    assert err.command == "motia-state migrate"
